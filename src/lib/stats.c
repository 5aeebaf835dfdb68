/* stats.c: a consumer's counters, per-partition lag (read from librdkafka's statistics JSON) and
 * certificate expiry times, and the pb_stats_t snapshots that hand them to any thread. */
#include "lib_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct pb_stats {
    uint64_t counters[PBSTATS_N];
    int64_t not_after[PBSTATS_CERTS];
    pbstats_lag_t *lag; /* topic strings owned */
    size_t n_lag;
};

static const char *const pbstats_names[] = {
#define PBSTATS_NAME_(name, value, text) [value] = text,
    PB_STAT_MAP(PBSTATS_NAME_)
#undef PBSTATS_NAME_
};

_Static_assert(sizeof pbstats_names / sizeof pbstats_names[0] == PBSTATS_N, "stat values are 0..N-1");

const char *pb_stat_name(pb_stat_t which) {
    return (unsigned)which < PBSTATS_N ? pbstats_names[which] : NULL;
}

void pbstats_init(pbstats_t *s) {
    for (size_t i = 0; i < PBSTATS_N; i++)
        atomic_init(&s->counters[i], 0);
    for (size_t i = 0; i < PBSTATS_CERTS; i++)
        atomic_init(&s->not_after[i], 0);
    pthread_mutex_init(&s->lock, NULL);
    s->lag = NULL;
    s->n_lag = 0;
}

void pbstats_destroy(pbstats_t *s) {
    pbstats_lag_free(s->lag, s->n_lag);
    s->lag = NULL;
    s->n_lag = 0;
    pthread_mutex_destroy(&s->lock);
}

void pbstats_set_not_after(pbstats_t *s, int64_t client, int64_t ca) {
    atomic_store_explicit(&s->not_after[PB_CERT_CLIENT], client, memory_order_relaxed);
    atomic_store_explicit(&s->not_after[PB_CERT_CA], ca, memory_order_relaxed);
}

void pbstats_lag_free(pbstats_lag_t *lag, size_t n) {
    for (size_t i = 0; lag && i < n; i++)
        free(lag[i].topic);
    free(lag);
}

static int pbstats_lag_cmp(const void *a, const void *b) {
    const pbstats_lag_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* A partition of the assignment: librdkafka's "desired" flag; without it (other versions), one that
 * is being fetched. The internal "unassigned" partition -1 never is. */
static int pbstats_assigned(json_t *p) {
    if (json_integer_value(json_object_get(p, "partition")) < 0) return 0;
    json_t *desired = json_object_get(p, "desired");
    if (desired) return json_is_true(desired);
    const char *state = json_string_value(json_object_get(p, "fetch_state"));
    return state && strcmp(state, "none") != 0 && strcmp(state, "stopped") != 0;
}

int pbstats_parse_lag(const char *json, size_t len, pbstats_lag_t **out, size_t *n) {
    pbstats_lag_t *lag = NULL;
    size_t count = 0, cap = 0;
    int rc = -1;
    *out = NULL;
    *n = 0;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *topics = json_object_get(root, "topics");
    if (!json_is_object(root) || (topics && !json_is_object(topics))) goto out;
    const char *name;
    json_t *topic;
    json_object_foreach(topics, name, topic) {
        const char *pkey;
        json_t *p;
        json_object_foreach(json_object_get(topic, "partitions"), pkey, p) {
            if (!pbstats_assigned(p)) continue;
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                pbstats_lag_t *nl = realloc(lag, ncap * sizeof *nl);
                if (!nl) goto out;
                lag = nl, cap = ncap;
            }
            json_t *cl = json_object_get(p, "consumer_lag");
            lag[count] =
                (pbstats_lag_t){.topic = strdup(name),
                                .partition = (int32_t)json_integer_value(json_object_get(p, "partition")),
                                .lag = json_is_integer(cl) ? json_integer_value(cl) : -1};
            if (!lag[count++].topic) goto out;
        }
    }
    if (count) qsort(lag, count, sizeof *lag, pbstats_lag_cmp);
    *out = lag;
    *n = count;
    lag = NULL;
    rc = 0;
out:
    pbstats_lag_free(lag, count);
    json_decref(root);
    return rc;
}

void pbstats_set_lag(pbstats_t *s, pbstats_lag_t *lag, size_t n) {
    pthread_mutex_lock(&s->lock);
    pbstats_lag_t *old = s->lag;
    size_t n_old = s->n_lag;
    s->lag = lag;
    s->n_lag = n;
    pthread_mutex_unlock(&s->lock);
    pbstats_lag_free(old, n_old);
}

pb_stats_t *pbstats_snapshot(pbstats_t *s) {
    pb_stats_t *snap = calloc(1, sizeof *snap);
    if (!snap) return NULL;
    for (size_t i = 0; i < PBSTATS_N; i++)
        snap->counters[i] = atomic_load_explicit(&s->counters[i], memory_order_relaxed);
    for (size_t i = 0; i < PBSTATS_CERTS; i++)
        snap->not_after[i] = atomic_load_explicit(&s->not_after[i], memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    if (s->n_lag && (snap->lag = calloc(s->n_lag, sizeof *snap->lag))) {
        for (; snap->n_lag < s->n_lag; snap->n_lag++) {
            snap->lag[snap->n_lag] = s->lag[snap->n_lag];
            if (!(snap->lag[snap->n_lag].topic = strdup(s->lag[snap->n_lag].topic))) break;
        }
    }
    int complete = snap->n_lag == s->n_lag;
    pthread_mutex_unlock(&s->lock);
    if (!complete) {
        pb_stats_destroy(snap);
        return NULL;
    }
    return snap;
}

uint64_t pb_stats_get(const pb_stats_t *s, pb_stat_t which) {
    return s && (unsigned)which < PBSTATS_N ? s->counters[which] : 0;
}

int64_t pb_stats_cert_not_after(const pb_stats_t *s, pb_cert_t which) {
    return s && (unsigned)which < PBSTATS_CERTS ? s->not_after[which] : 0;
}

size_t pb_stats_partition_count(const pb_stats_t *s) {
    return s ? s->n_lag : 0;
}

pb_err_t pb_stats_partition_at(const pb_stats_t *s, size_t idx, const char **topic, int32_t *partition,
                               int64_t *lag) {
    if (!s || idx >= s->n_lag) return PB_ERR_NOT_FOUND;
    if (topic) *topic = s->lag[idx].topic;
    if (partition) *partition = s->lag[idx].partition;
    if (lag) *lag = s->lag[idx].lag;
    return PB_OK;
}

void pb_stats_destroy(pb_stats_t *s) {
    if (!s) return;
    pbstats_lag_free(s->lag, s->n_lag);
    free(s);
}
