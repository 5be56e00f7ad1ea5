/* The sampler's choice of the next token, the mask and the draw, in one call (choose.py).
 *
 * The same rules as rules.py's allowed_tokens, entrances and sample_tokens (no fixed plan,
 * no top-k), as loops over the tokens a request can take. Every array is C-contiguous;
 * the state arrays have `batch` rows; booleans are one byte. Reentrant: each call keeps
 * its work in its own buffers, so threads may call it at once. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double max_polyphony, max_rest, max_note, target, earliest_end, entries_from, silence, temperature, top_p,
        longest_wait, first_entry, min_p, by_family;
} Limits; /* the settings and request facts read, in the order of Chooser.limits (choose.py) */

static int before(const double *x, int64_t i, int64_t j) {
    /* token i comes before token j: likelier, or as likely and earlier in the vocabulary */
    return x[i] > x[j] || (x[i] == x[j] && i < j);
}

static void sort_desc(int64_t *index, int64_t *scratch, int64_t count, const double *x) {
    /* a merge sort of `index` by `before` (count log count, reentrant) */
    for (int64_t width = 1; width < count; width *= 2) {
        for (int64_t lo = 0; lo < count; lo += 2 * width) {
            int64_t mid = lo + width < count ? lo + width : count, hi = lo + 2 * width < count ? lo + 2 * width : count;
            int64_t a = lo, c = mid, out = lo;
            while (a < mid && c < hi) scratch[out++] = before(x, index[c], index[a]) ? index[c++] : index[a++];
            while (a < mid) scratch[out++] = index[a++];
            while (c < hi) scratch[out++] = index[c++];
        }
        memcpy(index, scratch, count * sizeof(int64_t));
    }
}

int musenet_choose(
    /* the request: the candidate tokens and their facts (n each) */
    int64_t n, const int64_t *ids, const uint8_t *base, const double *wait_steps, const uint8_t *is_wait,
    const uint8_t *is_on, const uint8_t *is_off, const uint8_t *is_drum, const int64_t *key, const int64_t *family,
    int64_t end_at, int64_t pad, int64_t families, int64_t keys, int64_t drums, const uint8_t *requested,
    const double *limit_values,
    /* the step: logits (batch, vocab) and a uniform draw per row */
    int64_t batch, int64_t vocab, const float *logits, const float *draw,
    /* the state (rules.DecodeState) */
    const uint8_t *sounding, const double *onset, const int64_t *polyphony, const double *rest_seconds,
    const double *seconds, const uint8_t *instant_drums, const uint8_t *finished, const double *family_last,
    const double *step,
    /* out: a token per row, and each row's mask over the candidates (or NULL) */
    int64_t *tokens, uint8_t *masks) {
    if (n <= 0 || families <= 0) return 2;
    Limits L;
    memcpy(&L, limit_values, sizeof L);
    uint8_t *mask = malloc(n);
    double *x = malloc(n * sizeof(double));
    int64_t *order = malloc(n * sizeof(int64_t)), *scratch = malloc(n * sizeof(int64_t));
    double *ends = malloc(families * sizeof(double)), *kept = malloc(families * sizeof(double)),
           *lost = malloc(families * sizeof(double)), *boost = malloc(families * sizeof(double));
    uint8_t *near = malloc(families), *late = malloc(families);
    int64_t *count = malloc(families * sizeof(int64_t));
    double *group_mass = malloc((families + 1) * sizeof(double));
    if (!mask || !x || !order || !scratch || !ends || !kept || !lost || !boost || !near || !late || !count ||
        !group_mass) {
        free(mask), free(x), free(order), free(scratch), free(ends), free(kept), free(lost), free(boost), free(near), free(late),
            free(count), free(group_mass);
        return 1;
    }
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *sound = sounding + b * keys;
        const double *struck = onset + b * keys;
        if (finished[b]) {
            tokens[b] = pad;
            if (masks) memset(masks + b * n, 0, n);
            continue;
        }
        double now = seconds[b], st = step[b];
        /* ---- allowed_tokens */
        double longest = -INFINITY; /* the longest-held sounding note */
        for (int64_t k = 0; k < keys; k++)
            if (sound[k] && now - struck[k] > longest) longest = now - struck[k];
        int full = polyphony[b] >= L.max_polyphony;
        for (int64_t i = 0; i < n; i++) {
            uint8_t allowed = base[i];
            if (allowed) {
                if (is_wait[i]) {
                    double wait = wait_steps[i] * st;
                    allowed = !(rest_seconds[b] + wait > L.max_rest || now + wait > 1.1 * L.target ||
                                longest + wait > L.max_note);
                } else if (is_on[i]) {
                    allowed = is_drum[i] ? !instant_drums[b * 128 + key[i] - drums * 128] : !sound[key[i]] && !full;
                } else if (is_off[i]) {
                    allowed = sound[key[i]] && struck[key[i]] != now;
                }
            }
            mask[i] = allowed;
        }
        if (longest + st > L.max_note) /* a note cannot last another step: release such notes now */
            for (int64_t i = 0; i < n; i++)
                mask[i] = is_off[i] && sound[key[i]] && now - struck[key[i]] + st > L.max_note;
        mask[end_at] = now >= L.earliest_end;
        if (now >= L.target) {
            memset(mask, 0, n);
            mask[end_at] = 1;
        }
        int any = 0;
        for (int64_t i = 0; i < n && !any; i++) any = mask[i];
        if (!any) mask[end_at] = 1;
        /* ---- entrances */
        int any_near = 0;
        for (int64_t f = 0; f < families; f++) {
            double floor = L.entries_from + fmin(L.silence, L.first_entry) - L.silence;
            double last = family_last[b * families + f];
            ends[f] = (last > floor ? last : floor) + L.silence;
            int playing = 0;
            for (int64_t p = 0; p < 128 && !playing; p++) playing = sound[f * 128 + p];
            near[f] = requested[f] && !playing && now + L.longest_wait * st > ends[f];
            any_near |= near[f];
        }
        if (any_near) {
            memset(late, 0, families);
            for (int64_t i = 0; i < n; i++) /* near and able to enter: one of its note-ons allowed */
                if (mask[i] && is_on[i] && near[family[i]]) late[family[i]] = 1;
            double deadline = INFINITY;
            for (int64_t f = 0; f < families; f++)
                if (late[f] && ends[f] < deadline) deadline = ends[f];
            if (now + st > deadline) { /* the shortest wait passes it: only a late family's note-on */
                for (int64_t f = 0; f < families; f++) late[f] = late[f] && now + st > ends[f];
                for (int64_t i = 0; i < n; i++) mask[i] = mask[i] && is_on[i] && late[family[i]];
            } else {
                for (int64_t i = 0; i < n; i++)
                    if (is_wait[i] && mask[i] && now + wait_steps[i] * st > deadline) mask[i] = 0;
            }
        }
        if (masks) memcpy(masks + b * n, mask, n);
        /* ---- sample_tokens: temperature, the release boost, the mask, the nucleus */
        const float *row = logits + b * vocab;
        int any_off = 0;
        for (int64_t i = 0; i < n; i++) {
            x[i] = L.temperature != 1.0 ? (double)(row[ids[i]] / (float)L.temperature) : (double)row[ids[i]];
            any_off |= mask[i] && is_off[i];
        }
        if (any_off) { /* release_boost */
            double top = -INFINITY;
            for (int64_t i = 0; i < n; i++)
                if (is_off[i] && x[i] > top) top = x[i];
            for (int64_t f = 0; f < families; f++) kept[f] = lost[f] = 0.0, count[f] = 0;
            for (int64_t i = 0; i < n; i++) {
                if (!is_off[i]) continue;
                double p = exp(x[i] - top);
                if (mask[i]) kept[family[i]] += p, count[family[i]]++;
                else lost[family[i]] += p;
            }
            for (int64_t f = 0; f < families; f++)
                boost[f] = count[f] == 1 && kept[f] > 0 ? log(1 + lost[f] / fmax(kept[f], 1e-30)) : 0.0;
            for (int64_t i = 0; i < n; i++)
                if (is_off[i] && mask[i]) x[i] += boost[family[i]];
        }
        double top = -INFINITY, total = 0.0;
        for (int64_t i = 0; i < n; i++)
            if (mask[i] && x[i] > top) top = x[i];
        for (int64_t i = 0; i < n; i++) {
            x[i] = mask[i] ? exp(x[i] - top) : 0.0;
            total += x[i];
        }
        double u = draw[b];
        if (L.by_family && (L.top_p < 1.0 || L.min_p > 0)) {
            /* _one_group: a family's notes, or the rest, at the model's odds; the rest of the draw within it */
            for (int64_t g = 0; g <= families; g++) group_mass[g] = 0.0;
            for (int64_t i = 0; i < n; i++) group_mass[is_on[i] || is_off[i] ? family[i] : families] += x[i];
            double goal = u * total, before = 0.0, last_before = 0.0;
            int64_t group = -1, last = families;
            for (int64_t g = 0; g <= families; g++) {
                if (group_mass[g] <= 0.0) continue;
                last = g, last_before = before;
                if (before + group_mass[g] > goal) {
                    group = g;
                    break;
                }
                before += group_mass[g];
            }
            if (group < 0) group = last, before = last_before; /* rounding at the very top */
            u = (goal - before) / group_mass[group];
            u = u < 0.0 ? 0.0 : (u > 1.0 - 1e-7 ? 1.0 - 1e-7 : u);
            for (int64_t i = 0; i < n; i++)
                if ((is_on[i] || is_off[i] ? family[i] : families) != group) x[i] = 0.0;
            total = group_mass[group];
        }
        if (L.min_p > 0) { /* nothing below min_p x the likeliest token left */
            double likeliest = 0.0;
            for (int64_t i = 0; i < n; i++) likeliest = x[i] > likeliest ? x[i] : likeliest;
            total = 0.0;
            for (int64_t i = 0; i < n; i++) {
                if (x[i] < L.min_p * likeliest) x[i] = 0.0;
                total += x[i];
            }
        }
        int64_t chosen = n - 1;
        if (L.top_p >= 1.0) { /* inverse transform on the cumulative sum in token order */
            double goal = u * total, running = 0.0;
            for (int64_t i = 0; i < n; i++) {
                running += x[i];
                if (running > goal) {
                    chosen = i;
                    break;
                }
            }
            tokens[b] = ids[chosen];
            continue;
        }
        /* the nucleus: the likeliest tokens until their mass reaches top_p, sorted from among the
           tokens above a floor low enough that those above it hold top_p (the set a full sort gives) */
        double likeliest = 0.0; /* 1, unless a family was drawn */
        for (int64_t i = 0; i < n; i++) likeliest = x[i] > likeliest ? x[i] : likeliest;
        double floor = 1e-3 * likeliest, need = L.top_p * total;
        int64_t size;
        for (;;) {
            double mass = 0.0;
            size = 0;
            for (int64_t i = 0; i < n; i++)
                if (x[i] > 0 && x[i] >= floor) order[size++] = i, mass += x[i];
            if (floor == 0 || mass >= need) break;
            floor = floor > 1e-300 ? floor * 1e-2 : 0;
        }
        sort_desc(order, scratch, size, x);
        double running = 0.0;
        int64_t kept_size = 0;
        for (int64_t j = 0; j < size && running < need; j++) running += x[order[j]], kept_size = j + 1;
        double goal = u * running;
        chosen = kept_size - 1;
        running = 0.0;
        for (int64_t j = 0; j < kept_size; j++) {
            running += x[order[j]];
            if (running > goal) {
                chosen = j;
                break;
            }
        }
        tokens[b] = ids[order[chosen]];
    }
    free(mask), free(x), free(order), free(scratch), free(ends), free(kept), free(lost), free(boost), free(near), free(late),
        free(count), free(group_mass);
    return 0;
}
