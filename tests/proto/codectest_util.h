/*
 * codectest_util.h - helpers shared by the codec unit tests and fuzzers: reading
 * vectors from $TETHER_TEST_DATA and building the test messages.
 */
#ifndef TESTS_PROTO_CODECTEST_UTIL_H
#define TESTS_PROTO_CODECTEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calculator.pb-c.h"
#include "codectest.pb-c.h"
#include "core/alloc.h"
#include "google/protobuf/wrappers.pb-c.h"

/* Read $TETHER_TEST_DATA/rel; the test fails if it is missing. */
static inline unsigned char *
read_vector(const char *rel, size_t *len)
{
    const char *dir = getenv("TETHER_TEST_DATA");
    *len = 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : "tests/data", rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "missing vector %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16;
    unsigned char *b = malloc(cap);
    *len = fread(b, 1, cap - 1, f);
    b[*len] = '\0'; /* JSON vectors are also used as C strings */
    fclose(f);
    return b;
}

/* The value main.go's richValue() builds, as a protobuf message. */
static inline Codectest__Rich *
rich_new(void)
{
    static int64_t values[] = {1, -1, 0, 300, INT64_MAX, INT64_MIN};
    static Codectest__Rich__ScoresEntry score = CODECTEST__RICH__SCORES_ENTRY__INIT;
    static Codectest__Rich__ScoresEntry *scores[] = {&score};
    static Codectest__Inner child = CODECTEST__INNER__INIT;
    static char *tags[] = {"x", "", "yz"};
    static uint8_t data[] = {0, 1, 2, 0xff};
    static Codectest__Inner i1 = CODECTEST__INNER__INIT;
    static Codectest__Inner i2 = CODECTEST__INNER__INIT;
    static Codectest__Inner *items[] = {&i1, &i2};
    static Codectest__Rich__LabelsEntry label = CODECTEST__RICH__LABELS_ENTRY__INIT;
    static Codectest__Rich__LabelsEntry *labels[] = {&label};
    static Google__Protobuf__Int64Value opt = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    static double ratios[12];
    static Codectest__Rich r = CODECTEST__RICH__INIT;
    double rv[] = {0,   1e21, 1e-7, 123456789.125, 5e-324, 1.7976931348623157e308,
                   100, 1e20, -2.5, 3.14159,       1e-6,   -0.0};
    memcpy(ratios, rv, sizeof(rv));
    score.key = "a";
    score.value = 1;
    child.name = "kid";
    child.count = 7;
    i1.name = "i1";
    i1.count = 1;
    label.key = -3;
    label.value = "neg";
    opt.value = 42;
    r.name = "h\xc3\xa9llo <w> & \"q\" \\ \n\t\x01 \xe2\x80\xa8 \xff";
    r.n_values = 6;
    r.values = values;
    r.n_scores = 1;
    r.scores = scores;
    r.child = &child;
    r.n_tags = 3;
    r.tags = tags;
    r.data.data = data;
    r.data.len = 4;
    r.ratio = 0.1;
    r.ok = 1;
    r.big = UINT64_MAX;
    r.small = -5;
    r.usmall = 7;
    r.f = 1.5f;
    r.color = CODECTEST__HUE__HUE_BLUE;
    r.n_items = 2;
    r.items = items;
    r.n_labels = 1;
    r.labels = labels;
    r.opt = &opt;
    r.s = -9;
    r.n_ratios = 12;
    r.ratios = ratios;
    return &r;
}

/* Check a decoded Rich against rich_new() (name compared by the caller,
 * since decoders replace the invalid byte with U+FFFD). */
static inline int
rich_equal(const Codectest__Rich *a, const Codectest__Rich *b)
{
    if (a->n_values != b->n_values || memcmp(a->values, b->values, a->n_values * 8) != 0) {
        return 0;
    }
    if (a->n_scores != 1 || b->n_scores != 1 || strcmp(a->scores[0]->key, b->scores[0]->key) ||
        a->scores[0]->value != b->scores[0]->value) {
        return 0;
    }
    if (!a->child || !b->child || strcmp(a->child->name, b->child->name) ||
        a->child->count != b->child->count) {
        return 0;
    }
    if (a->n_tags != b->n_tags) {
        return 0;
    }
    for (size_t i = 0; i < a->n_tags; i++) {
        if (strcmp(a->tags[i], b->tags[i]) != 0) {
            return 0;
        }
    }
    if (a->data.len != b->data.len || memcmp(a->data.data, b->data.data, a->data.len) != 0) {
        return 0;
    }
    if (a->ratio != b->ratio || a->ok != b->ok || a->big != b->big || a->small != b->small ||
        a->usmall != b->usmall || a->f != b->f || a->color != b->color || a->s != b->s) {
        return 0;
    }
    if (a->n_items != b->n_items || strcmp(a->items[0]->name, b->items[0]->name) ||
        a->items[0]->count != b->items[0]->count || strcmp(a->items[1]->name, "") ||
        b->items[1]->count != 0) {
        return 0;
    }
    if (a->n_labels != 1 || b->n_labels != 1 || a->labels[0]->key != b->labels[0]->key ||
        strcmp(a->labels[0]->value, b->labels[0]->value)) {
        return 0;
    }
    if (!a->opt || !b->opt || a->opt->value != b->opt->value) {
        return 0;
    }
    if (a->n_ratios != b->n_ratios) {
        return 0;
    }
    for (size_t i = 0; i < a->n_ratios; i++) {
        if (a->ratios[i] != b->ratios[i] || signbit(a->ratios[i]) != signbit(b->ratios[i])) {
            return 0;
        }
    }
    return 1;
}

#endif
