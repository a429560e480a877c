#include "attention/impl/gumbel_block.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <vector>

#include "attention/lazy_gumbel.h"
#include "common/check.h"
#include "kernels/vector_math.h"

namespace kvtune::impl {
namespace {

// The family of the blocks' field streams, apart from the rows' own streams.
constexpr uint64_t kFieldStreams = 0x6669656c64ULL;  // "field"
// A row draws by scoring every key when its draws' expected tail keys exceed this share of n.
constexpr double kDenseShare = 0.25;
// Field keys asked for ahead of the one being scored.
constexpr size_t kPrefetchAhead = 8;
// Random numbers transformed per batch: the logarithms of a batch are one vector call
// (kernels/vector_math.h). What a batch leaves unused at the end of a field is dropped.
constexpr int kBatch = 16;

struct Row {
  std::vector<int64_t> ids;     // S: the valid top-k ids, in the order given
  std::vector<double> scores;   // their scores
  std::vector<int64_t> sorted;  // S ascending, for the "is it in my S" walk over a field
  std::vector<double> cdf;      // cumulative exp(s_j - max s) over S
  std::vector<float> q32;       // q rounded to float32, for BankRows::score_id
  const double* q = nullptr;
  SamplerRng rng;  // the row's own stream: its S part, then its tail Gumbels
  double s_min = 0, log_z = 0;
  bool dense = false, has_tail = false;
  // Per draw: the running winner and its perturbed score, the threshold B = M - s_min and
  // P(G > B), the probability that a tail key enters the draw.
  std::vector<int64_t> winner;
  std::vector<double> best, threshold, tail_p;
  std::vector<int64_t> draw_of_rank;  // the draws by ascending threshold
  size_t walk = 0;                    // position in `sorted` during one field
  // Truncated Gumbels for the current field's draw, made a batch at a time from the row's own
  // stream; `next` == kBatch: none left.
  double gumbels[kBatch];
  int next = kBatch;
};

// The row's next Gumbel conditioned on exceeding the threshold whose P(G > B) is tail_p, as
// truncated_gumbel computes it (E = -log1p(-V tail_p), G = -log E), a batch at a time.
double next_truncated_gumbel(Row& row, double tail_p) {
  if (row.next == kBatch) {
    double* g = row.gumbels;
    for (int i = 0; i < kBatch; ++i) g[i] = -open_uniform(row.rng) * tail_p;
    kernels::log1p_n(g, g, kBatch);  // -E
    for (int i = 0; i < kBatch; ++i) g[i] = -g[i];
    kernels::log_n(g, g, kBatch);  // log E = -G
    row.next = 0;
  }
  return -row.gumbels[row.next++];
}

void prepare_row(Row& row, const double* q, const int64_t* top_ids, const double* top_scores,
                 int64_t k, int64_t n, int64_t dk, int64_t count) {
  row.q = q;
  row.q32.assign(q, q + dk);
  row.ids.clear();
  row.scores.clear();
  for (int64_t j = 0; j < k; ++j) {
    if (top_ids[j] < 0) continue;
    KVT_CHECK(top_ids[j] < n, "lazy Gumbel: top-k id ", top_ids[j], " is outside the ", n, " keys");
    KVT_CHECK(std::isfinite(top_scores[j]), "lazy Gumbel: the score of id ", top_ids[j], " is ",
              top_scores[j]);
    row.ids.push_back(top_ids[j]);
    row.scores.push_back(top_scores[j]);
  }
  KVT_CHECK(!row.ids.empty(), "lazy Gumbel needs at least one top-k id (got none of ", k, ")");
  row.sorted = row.ids;
  std::sort(row.sorted.begin(), row.sorted.end());
  KVT_CHECK(std::adjacent_find(row.sorted.begin(), row.sorted.end()) == row.sorted.end(),
            "the top-k ids must be distinct");
  row.s_min = *std::min_element(row.scores.begin(), row.scores.end());
  const double s_max = *std::max_element(row.scores.begin(), row.scores.end());
  double total = 0;
  row.cdf.clear();
  for (const double x : row.scores) row.cdf.push_back(total += std::exp(x - s_max));
  row.log_z = s_max + std::log(total);
  const int64_t tail_n = n - static_cast<int64_t>(row.ids.size());
  row.has_tail = tail_n > 0;
  // E[m] per draw: a tail key enters when G_j > log Z_S + G_0 - s_min, and G_j - G_0 is
  // Logistic(0, 1), so P = 1 / (1 + Z_S exp(-s_min)).
  const double expected_m = static_cast<double>(tail_n) / (1.0 + std::exp(row.log_z - row.s_min));
  row.dense = row.has_tail &&
              static_cast<double>(count) * expected_m > kDenseShare * static_cast<double>(n);
  row.winner.assign(static_cast<size_t>(count), -1);
  row.best.assign(static_cast<size_t>(count), 0.0);
  row.threshold.assign(static_cast<size_t>(count), 0.0);
  row.tail_p.assign(static_cast<size_t>(count), 0.0);
  row.draw_of_rank.resize(static_cast<size_t>(count));
}

// Every key scored, `count` draws by inverse CDF over all n.
void draw_dense(const BankRows& rows, const Row& row, int64_t count, double scale, SamplerRng& rng,
                int64_t* out, std::vector<double>& scratch, std::vector<int64_t>& id_scratch) {
  const int64_t n = rows.total();
  scratch.resize(static_cast<size_t>(n));
  id_scratch.resize(static_cast<size_t>(n));
  std::iota(id_scratch.begin(), id_scratch.end(), int64_t{0});
  rows.score_ids(row.q, row.q32.data(), id_scratch.data(), n, scale, scratch.data());
  const double s_max = *std::max_element(scratch.begin(), scratch.end());
  double total = 0;
  for (auto& x : scratch) x = total += std::exp(x - s_max);
  for (int64_t c = 0; c < count; ++c) {
    const double u = open_uniform(rng) * total;
    const auto at = std::upper_bound(scratch.begin(), scratch.end(), u) - scratch.begin();
    out[c] = std::min<int64_t>(at, n - 1);
  }
}

// The S part of every draw of a lazy row, from its own stream, in LazyGumbelSampler's order: M
// from one Gumbel, the winner within S by inverse CDF.
void draw_top(Row& row, int64_t count, SamplerRng& rng) {
  for (int64_t c = 0; c < count; ++c) {
    row.best[c] = row.log_z + gumbel(rng);
    const double u = open_uniform(rng) * row.cdf.back();
    const size_t j = std::min<size_t>(
        static_cast<size_t>(std::upper_bound(row.cdf.begin(), row.cdf.end(), u) - row.cdf.begin()),
        row.ids.size() - 1);
    row.winner[c] = row.ids[j];
    row.threshold[c] = row.best[c] - row.s_min;
    row.tail_p[c] = gumbel_tail_probability(row.threshold[c]);
  }
  // Which field a draw uses may depend on its M (the fields are i.i.d. and independent of every
  // M): pairing draws of equal rank across the block's rows keeps each field's highest entry
  // probability, and so its size, near those of the draws that use it.
  std::iota(row.draw_of_rank.begin(), row.draw_of_rank.end(), int64_t{0});
  std::sort(row.draw_of_rank.begin(), row.draw_of_rank.end(), [&row](int64_t a, int64_t b) {
    return row.threshold[a] < row.threshold[b] || (row.threshold[a] == row.threshold[b] && a < b);
  });
}

struct Scratch {
  std::vector<Row> rows;
  std::vector<int64_t> field_ids, lazy, order;
  std::vector<double> field_marks, sorted_p, dense_scores;
  std::vector<int64_t> dense_ids;
};

void draw_block(const BankRows& rows, const double* q, const int64_t* top_ids,
                const double* top_scores, int64_t first, int64_t nrows, int64_t k, int64_t count,
                double scale, uint64_t seed, int64_t block, int64_t* ids, GumbelDrawStats& stats,
                Scratch& s) {
  const int64_t n = rows.total(), dk = rows.dk();
  s.rows.resize(static_cast<size_t>(nrows));
  s.lazy.clear();
  for (int64_t i = 0; i < nrows; ++i) {
    const int64_t r = first + i;
    Row& row = s.rows[i];
    prepare_row(row, q + r * dk, top_ids + r * k, top_scores + r * k, k, n, dk, count);
    row.rng.seed(stream_seed(seed, static_cast<uint64_t>(r)));
    if (row.dense) {
      draw_dense(rows, row, count, scale, row.rng, ids + r * count, s.dense_scores, s.dense_ids);
      ++stats.dense_rows;
      continue;
    }
    draw_top(row, count, row.rng);
    if (row.has_tail) s.lazy.push_back(i);
  }

  const uint64_t fields = stream_seed(seed, kFieldStreams);
  for (int64_t g = 0; g < count && !s.lazy.empty(); ++g) {
    // The rows by descending entry probability p_r of their rank-g draw: a field key with mark
    // U enters the draws of the rows with p_r > U, a prefix of this order.
    s.order = s.lazy;
    auto tail_p = [&s, g](int64_t i) {
      const Row& row = s.rows[i];
      return row.tail_p[row.draw_of_rank[g]];
    };
    std::sort(s.order.begin(), s.order.end(), [&](int64_t a, int64_t b) {
      return tail_p(a) > tail_p(b) || (tail_p(a) == tail_p(b) && a < b);
    });
    s.sorted_p.clear();
    for (const int64_t i : s.order) s.sorted_p.push_back(tail_p(i));
    const double p = s.sorted_p.front();
    const double log_q = std::log1p(-p);
    if (!(p > 0) || !(log_q < 0)) continue;  // no key's Gumbel can pass any threshold

    // The field: its keys by geometric skips over all n ids (each enters with probability
    // p = max p_r), each with a mark U ~ U(0, p). A key is in row r's draw iff U < p_r: with
    // probability p_r, independently over keys, as in a sampler of its own.
    SamplerRng frng(stream_seed(fields, static_cast<uint64_t>(block * count + g)));
    s.field_ids.clear();
    s.field_marks.clear();
    if (std::isinf(log_q)) {  // p = 1: every key
      for (int64_t id = 0; id < n; ++id) s.field_ids.push_back(id);
    } else {
      double t = -1, logs[kBatch];
      for (bool more = true; more;) {
        for (int i = 0; i < kBatch; ++i) logs[i] = open_uniform(frng);
        kernels::log_n(logs, logs, kBatch);
        for (int i = 0; i < kBatch && more; ++i) {
          t += 1 + std::floor(logs[i] / log_q);  // the keys skipped before the next one
          more = t < static_cast<double>(n);
          if (more) s.field_ids.push_back(static_cast<int64_t>(t));
        }
      }
    }
    for (size_t i = 0; i < s.field_ids.size(); ++i) {
      s.field_marks.push_back(p * open_uniform(frng));
    }
    stats.gathered += static_cast<int64_t>(s.field_ids.size());

    for (const int64_t i : s.order) {
      s.rows[i].walk = 0;
      s.rows[i].next = kBatch;  // this field's draw has its own threshold
    }
    for (size_t f = 0; f < s.field_ids.size(); ++f) {
      if (f + kPrefetchAhead < s.field_ids.size()) {
        rows.prefetch_key(s.field_ids[f + kPrefetchAhead]);
      }
      const int64_t id = s.field_ids[f];
      const double mark = s.field_marks[f];
      const auto users = std::partition_point(s.sorted_p.begin(), s.sorted_p.end(),
                                              [mark](double x) { return x > mark; }) -
                         s.sorted_p.begin();
      for (int64_t a = 0; a < users; ++a) {
        Row& row = s.rows[s.order[a]];
        // Keys of the row's own S are not in its tail: S's Gumbels are in its M already.
        while (row.walk < row.sorted.size() && row.sorted[row.walk] < id) ++row.walk;
        if (row.walk < row.sorted.size() && row.sorted[row.walk] == id) continue;
        const int64_t c = row.draw_of_rank[g];
        // The key's Gumbel in this row's draw, given that it passes the threshold: from the
        // row's own stream, so rows share which keys they examine but not their Gumbels.
        const double G = next_truncated_gumbel(row, row.tail_p[c]);
        const double score = rows.score_id(row.q, row.q32.data(), id, scale);
        ++stats.tail_keys;
        if (score > row.s_min) ++stats.above_threshold;
        const double v = score + G;
        if (v > row.best[c]) {
          row.best[c] = v;
          row.winner[c] = id;
        }
      }
    }
  }
  for (int64_t i = 0; i < nrows; ++i) {
    const Row& row = s.rows[i];
    if (!row.dense) std::copy(row.winner.begin(), row.winner.end(), ids + (first + i) * count);
  }
}

}  // namespace

void lazy_gumbel_draws(const BankRows& rows, const double* q, const int64_t* top_ids,
                       const double* top_scores, int64_t R, int64_t k, int64_t count, double scale,
                       uint64_t seed, int64_t* ids, GumbelDrawStats* stats) {
  KVT_CHECK(count > 0, "lazy Gumbel: the number of draws must be positive, got ", count);
  KVT_CHECK(k > 0, "lazy Gumbel: k must be positive, got ", k);
  const int64_t blocks = (R + kGumbelBlockRows - 1) / kGumbelBlockRows;
  GumbelDrawStats total;
  std::exception_ptr error;
#pragma omp parallel
  {
    Scratch scratch;
    GumbelDrawStats mine;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      try {
        const int64_t first = b * kGumbelBlockRows;
        draw_block(rows, q, top_ids, top_scores, first, std::min(kGumbelBlockRows, R - first), k,
                   count, scale, seed, b, ids, mine, scratch);
      } catch (...) {
#pragma omp critical(kvtune_gumbel_block_error)
        if (!error) error = std::current_exception();
      }
    }
#pragma omp critical(kvtune_gumbel_block_stats)
    {
      total.tail_keys += mine.tail_keys;
      total.gathered += mine.gathered;
      total.above_threshold += mine.above_threshold;
      total.dense_rows += mine.dense_rows;
    }
  }
  if (error) std::rethrow_exception(error);
  if (stats != nullptr) *stats = total;
}

}  // namespace kvtune::impl
