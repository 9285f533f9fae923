/*
 * ring-geometry.c - the elastic rings' arithmetic in vtoe_abi.h, exhaustively over the sizes a
 * region can have: how far a large area fills for the ends' buffers, the span a stay there
 * indexes, geo's encoding, and the room a producer has.  Prints "ok CHECKS" or the first
 * failure, and exits 1 on one.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "vtoe_abi.h"

static unsigned long checks;

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		checks++;                                                                    \
		if (!(cond)) {                                                               \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
			printf(__VA_ARGS__);                                                 \
			printf("\n");                                                        \
			exit(1);                                                             \
		}                                                                            \
	} while (0)

#define MiB (1u << 20)

static int pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static void fill_and_span(uint32_t ring, uint32_t large, uint32_t ring_auto)
{
	static const uint32_t bufs[] = { 0, 4096, 100000, 1 * MiB, 3 * MiB, 4 * MiB, 40 * MiB };

	for (unsigned s = 0; s < sizeof(bufs) / sizeof(bufs[0]); s++) {
		for (unsigned r = 0; r < sizeof(bufs) / sizeof(bufs[0]); r++) {
			uint32_t snd = bufs[s], rcv = bufs[r];
			uint64_t fill = vtoe_large_fill(ring, large, ring_auto, snd, rcv);
			uint64_t need = (snd ? 2ull * snd : ring_auto) + 2ull * rcv;
			uint32_t span = vtoe_large_span(ring, large, fill);

			/* what the two kernel buffers hold, beside the small area, within the area */
			CHECK(fill <= large, "fill %llu large %u", (unsigned long long)fill, large);
			CHECK(fill >= (ring_auto < large ? ring_auto : large), "fill %llu below auto %u",
			      (unsigned long long)fill, ring_auto);
			CHECK(fill == large || ring + fill >= need, "ring %u fill %llu need %llu", ring,
			      (unsigned long long)fill, (unsigned long long)need);
			/* the span holds the fill, in a power of two above the small area */
			CHECK(pow2(span) && span > ring && span <= large, "span %u ring %u large %u", span,
			      ring, large);
			CHECK(span >= fill, "span %u fill %llu", span, (unsigned long long)fill);
			CHECK(span == 2 * ring || span / 2 < fill, "span %u not the least for fill %llu",
			      span, (unsigned long long)fill);
		}
	}
}

static void geo_encoding(uint32_t ring, uint32_t large)
{
	static const uint64_t ats[] = { 0, 1, 4095, 1ull << 32, (1ull << 56) - 1 };

	for (uint32_t span = 0; span <= VTOE_RING_MAX; span = span ? span * 2 : VTOE_RING_MIN) {
		for (unsigned i = 0; i < sizeof(ats) / sizeof(ats[0]); i++) {
			for (int from = 0; from < 3; from++) {
				for (int area = 0; area < 3; area++) {
					uint64_t geo = vtoe_geo(ats[i], from, area, span);
					uint32_t want = span > ring && span <= large ? span : 0;
					int names_large = from == 1 || area == 1;
					int valid = (!names_large || want) && (large || (from != 2 && area != 2));

					CHECK(vtoe_geo_at(geo) == ats[i], "at");
					CHECK((int)(geo & 3) == area && (int)((geo >> 2) & 3) == from, "areas");
					CHECK(vtoe_geo_span(geo) == span, "span %u read %u", span,
					      vtoe_geo_span(geo));
					CHECK(vtoe_geo_area_size(geo, ring, large, 1) == want,
					      "large area's size %u for span %u", vtoe_geo_area_size(geo, ring, large, 1), span);
					CHECK(vtoe_geo_valid(geo, ring, large) == valid,
					      "valid %d, from %d area %d span %u large %u", valid, from, area, span, large);
				}
			}
		}
	}
}

static void room_in_a_stay(uint32_t ring, uint32_t large)
{
	for (uint32_t span = 2 * ring; span && span <= large; span *= 2) {
		uint64_t at = 12345 + (uint64_t)ring; /* moved to the large area at `at` */
		uint64_t geo = vtoe_geo(at, 0, 1, span);

		/* empty: the whole span; full: none; one byte over: impossible */
		CHECK(vtoe_ring_room(geo, at, at, ring, large) == (int64_t)span, "empty");
		CHECK(vtoe_ring_room(geo, at + span, at, ring, large) == 0, "full");
		CHECK(vtoe_ring_room(geo, at + span + 1, at, ring, large) == -1, "over");
		/* bytes left in the small area before the move do not count against the stay */
		CHECK(vtoe_ring_room(geo, at + 100, at - ring, ring, large) == (int64_t)span - 100, "after");
	}
}

int main(void)
{
	for (uint32_t ring = VTOE_RING_MIN; ring < VTOE_RING_MAX; ring *= 4) {
		for (uint32_t large = 2 * ring; large && large <= VTOE_RING_MAX; large *= 4) {
			for (uint32_t a = 0; a <= large; a = a ? a * 4 : ring * 2)
				fill_and_span(ring, large, a);
			geo_encoding(ring, large);
			room_in_a_stay(ring, large);
		}
		geo_encoding(ring, 0);
	}
	printf("ok %lu\n", checks);
	return 0;
}
