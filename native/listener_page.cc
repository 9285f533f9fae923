// JavaScript class ListenerPage: the page that tells a listener's processes how many offloaded
// connections to its port wait for a claim (struct vtoe_listener_page in vtoe_abi.h).
//
//   new ListenerPage()   a sealed memfd of VTOE_LISTENER_PAGE_BYTES, mapped here read-write and
//                        sealed against every other write
//   .fd                  the memfd, to hand out with the LISTEN's ACK (-1 once closed)
//   .setWaiting(n)       published with release order, before the reply that makes it matter
//   .close()             unmaps and closes; idempotent (the finalizer does it too)
#include <napi.h>

#include <fcntl.h>
#include <sys/mman.h>

#include <memory>
#include <new>

#include "bindings.h"
#include "js_boundary.h"
#include "sealed_memfd.h"
#include "system_error.h"
#include "unique_fd.h"
#include "vtoe_abi.h"

namespace vtoe {

namespace {

class ListenerPage {
public:
	ListenerPage()
	{
		// Resizing is sealed now, writes once the page is set up (F_SEAL_FUTURE_WRITE below).
		memfd_ = sealed_memfd("vtoe-listener", VTOE_LISTENER_PAGE_BYTES, F_SEAL_SHRINK | F_SEAL_GROW,
				      "the listener page");
		void *base = mmap(nullptr, VTOE_LISTENER_PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
		if (base == MAP_FAILED)
			throw_errno("cannot map the listener page");
		page_ = new (base) vtoe_listener_page;
		page_->magic = VTOE_LISTENER_PAGE_MAGIC;
		page_->waiting.store(0, std::memory_order_release);
		// From here on only this mapping writes: a holder of the memfd can neither write() it
		// nor map it writable, whatever mode it reopens it with.
		if (fcntl(memfd_.get(), F_ADD_SEALS, VTOE_LISTENER_PAGE_SEALS) != 0)
			throw_errno("cannot seal the listener page against writes");
	}
	~ListenerPage() { close(); }
	ListenerPage(const ListenerPage &) = delete;
	ListenerPage &operator=(const ListenerPage &) = delete;

	int fd() const { return memfd_.get(); }
	void set_waiting(uint32_t n) { page_->waiting.store(n, std::memory_order_release); }
	bool closed() const { return page_ == nullptr; }

	void close()
	{
		if (page_) {
			page_->~vtoe_listener_page();
			munmap(page_, VTOE_LISTENER_PAGE_BYTES);
			page_ = nullptr;
		}
		memfd_.reset();
	}

private:
	unique_fd memfd_;
	vtoe_listener_page *page_ = nullptr;
};

class JsListenerPage : public Napi::ObjectWrap<JsListenerPage> {
public:
	static Napi::Function define(Napi::Env env)
	{
		return DefineClass(env, "ListenerPage",
				   {
					   InstanceMethod<&JsListenerPage::set_waiting>("setWaiting"),
					   InstanceMethod<&JsListenerPage::close>("close"),
					   InstanceAccessor<&JsListenerPage::fd>("fd"),
				   });
	}

	explicit JsListenerPage(const Napi::CallbackInfo &info) : ObjectWrap(info)
	{
		page_ = at_js_boundary(info.Env(), [] { return std::make_unique<ListenerPage>(); });
	}

private:
	Napi::Value fd(const Napi::CallbackInfo &info)
	{
		return Napi::Number::New(info.Env(), page_->closed() ? -1 : page_->fd());
	}

	void set_waiting(const Napi::CallbackInfo &info)
	{
		uint32_t n = static_cast<uint32_t>(js_integer(info[0], "waiting", 0, UINT32_MAX));
		if (page_->closed())
			throw Napi::Error::New(info.Env(), "the listener page is closed");
		page_->set_waiting(n);
	}

	void close(const Napi::CallbackInfo &) { page_->close(); }

	std::unique_ptr<ListenerPage> page_;
};

} // namespace

Napi::Function define_listener_page(Napi::Env env)
{
	return JsListenerPage::define(env);
}

} // namespace vtoe
