{
  "targets": [
    {
      "target_name": "vtoe_native",
      "sources": [
        "native/addon.cc",
        "native/abi_constants.cc",
        "native/control_server.cc",
        "native/ctl_message.cc",
        "native/js_boundary.cc",
        "native/js_control_server.cc",
        "native/epoll_set.cc",
        "native/fd_watch.cc",
        "native/js_handlers.cc",
        "native/js_shm_connection.cc",
        "native/js_shm_region_pool.cc",
        "native/listener_page.cc",
        "native/shm_connection.cc",
        "native/shm_region_pool.cc",
        "native/shm_relay.cc",
        "native/socket_path.cc",
        "native/tcp_diag.cc",
        "native/service_notify.cc",
        "native/system_error.cc",
        "native/verbs_probe.cc",
        "native/js_verbs_probe.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "include"
      ],
      "defines": ["NAPI_CPP_EXCEPTIONS"],
      "libraries": ["-ldl"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"]
    },
    {
      "target_name": "vtoe_verbs",
      "conditions": [
        ["<!(test -f /usr/include/rdma/rdma_cma.h && test -f /usr/include/infiniband/verbs.h && echo 1 || echo 0)==1", {
          "sources": [
            "native/js_verbs_fabric.cc",
            "native/verbs_fabric.cc",
            "native/verbs_conn.cc",
            "native/verbs_wire_rx.cc",
            "native/fd_watch.cc",
            "native/shm_connection.cc",
            "native/shm_relay.cc",
            "native/js_boundary.cc",
            "native/js_handlers.cc",
            "native/system_error.cc"
          ],
          "libraries": ["-lrdmacm", "-libverbs"]
        }, {
          "sources": ["native/verbs_unavailable.cc"]
        }]
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "include"
      ],
      "defines": ["NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"]
    }
  ]
}
