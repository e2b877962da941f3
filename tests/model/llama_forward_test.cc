#include "core/model/llama_forward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/model/gaussian.h"
#include "core/model/llama2c_format.h"
#include "core/model/llama2c_import.h"
#include "core/model/llama2c_tokenizer.h"
#include "core/tensor/half.h"
#include "core/tensor/safetensors_writer.h"
#include "tests/model/llama2c_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/util/test_env.h"

namespace catq {
namespace {

// ---------------------------------------------------------------------------
// A reference llama2.c forward pass, written the way run.c writes it: one
// token at a time with a KV cache, straight from the .bin's tensors in their
// original (interleaved-RoPE) row order, RoPE rotating adjacent pairs.

struct Llama2cReference {
  Llama2cHeader h;
  std::vector<float> data;  // The file's floats after the header.
  Llama2cLayout layout;

  const float* At(const Llama2cSection& section, int64_t layer = 0) const {
    return data.data() + (section.LayerOffset(layer) - kLlama2cHeaderBytes) / sizeof(float);
  }
};

absl::StatusOr<Llama2cReference> LoadLlama2cReference(const std::string& path) {
  absl::StatusOr<std::string> bytes = Env::Default()->ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  Llama2cReference ref;
  absl::StatusOr<Llama2cHeader> header = ParseLlama2cHeader(*bytes, path);
  if (!header.ok()) return header.status();
  ref.h = *header;
  ref.layout = ComputeLlama2cLayout(ref.h);
  ref.data.resize((bytes->size() - kLlama2cHeaderBytes) / sizeof(float));
  std::memcpy(ref.data.data(), bytes->data() + kLlama2cHeaderBytes,
              ref.data.size() * sizeof(float));
  return ref;
}

void RefRmsNorm(float* o, const float* x, const float* weight, int64_t size) {
  float ss = 0.0f;
  for (int64_t j = 0; j < size; ++j) ss += x[j] * x[j];
  ss /= static_cast<float>(size);
  ss += 1e-5f;
  ss = 1.0f / std::sqrt(ss);
  for (int64_t j = 0; j < size; ++j) o[j] = weight[j] * (ss * x[j]);
}

// xout[d] = w[d, n] x[n]
void RefMatmul(float* xout, const float* x, const float* w, int64_t n, int64_t d) {
  for (int64_t i = 0; i < d; ++i) {
    float val = 0.0f;
    for (int64_t j = 0; j < n; ++j) val += w[i * n + j] * x[j];
    xout[i] = val;
  }
}

// The logits of every position of `tokens`, [tokens, vocab].
RowMatrixXf Llama2cForward(const Llama2cReference& m, const std::vector<int32_t>& tokens) {
  const Llama2cHeader& p = m.h;
  const Llama2cLayout& l = m.layout;
  const int64_t dim = p.dim, hidden = p.hidden_dim, head_size = p.head_dim();
  const int64_t kv_dim = p.kv_dim(), kv_mul = p.n_heads / p.n_kv_heads;
  const int64_t seq = static_cast<int64_t>(tokens.size());
  std::vector<float> x(dim), xb(dim), xb2(dim), hb(hidden), hb2(hidden), q(dim), att(seq);
  std::vector<float> key_cache(p.n_layers * seq * kv_dim), value_cache(p.n_layers * seq * kv_dim);
  RowMatrixXf logits(seq, p.vocab_size);
  for (int64_t pos = 0; pos < seq; ++pos) {
    std::memcpy(x.data(), m.At(l.token_embedding) + tokens[pos] * dim, dim * sizeof(float));
    for (int64_t layer = 0; layer < p.n_layers; ++layer) {
      RefRmsNorm(xb.data(), x.data(), m.At(l.rms_att, layer), dim);
      float* k = key_cache.data() + (layer * seq + pos) * kv_dim;
      float* v = value_cache.data() + (layer * seq + pos) * kv_dim;
      RefMatmul(q.data(), xb.data(), m.At(l.wq, layer), dim, dim);
      RefMatmul(k, xb.data(), m.At(l.wk, layer), dim, kv_dim);
      RefMatmul(v, xb.data(), m.At(l.wv, layer), dim, kv_dim);
      // RoPE, interleaved: rotate (i, i + 1) of each head.
      for (int64_t i = 0; i < dim; i += 2) {
        const int64_t head_dim = i % head_size;
        const float freq =
            1.0f / std::pow(10000.0f, static_cast<float>(head_dim) / static_cast<float>(head_size));
        const float val = static_cast<float>(pos) * freq;
        const float fcr = std::cos(val), fci = std::sin(val);
        const int rotn = i < kv_dim ? 2 : 1;
        for (int r = 0; r < rotn; ++r) {
          float* vec = r == 0 ? q.data() : k;
          const float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      for (int64_t h = 0; h < p.n_heads; ++h) {
        const float* qh = q.data() + h * head_size;
        for (int64_t t = 0; t <= pos; ++t) {
          const float* kt =
              key_cache.data() + (layer * seq + t) * kv_dim + (h / kv_mul) * head_size;
          float score = 0.0f;
          for (int64_t i = 0; i < head_size; ++i) score += qh[i] * kt[i];
          att[t] = score / std::sqrt(static_cast<float>(head_size));
        }
        float max_val = att[0];
        for (int64_t t = 1; t <= pos; ++t) max_val = std::max(max_val, att[t]);
        float sum = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
          att[t] = std::exp(att[t] - max_val);
          sum += att[t];
        }
        for (int64_t t = 0; t <= pos; ++t) att[t] /= sum;
        float* xbh = xb.data() + h * head_size;
        std::fill(xbh, xbh + head_size, 0.0f);
        for (int64_t t = 0; t <= pos; ++t) {
          const float* vt =
              value_cache.data() + (layer * seq + t) * kv_dim + (h / kv_mul) * head_size;
          for (int64_t i = 0; i < head_size; ++i) xbh[i] += att[t] * vt[i];
        }
      }
      RefMatmul(xb2.data(), xb.data(), m.At(l.wo, layer), dim, dim);
      for (int64_t i = 0; i < dim; ++i) x[i] += xb2[i];
      RefRmsNorm(xb.data(), x.data(), m.At(l.rms_ffn, layer), dim);
      RefMatmul(hb.data(), xb.data(), m.At(l.w1, layer), dim, hidden);
      RefMatmul(hb2.data(), xb.data(), m.At(l.w3, layer), dim, hidden);
      for (int64_t i = 0; i < hidden; ++i) {
        hb[i] = hb[i] * (1.0f / (1.0f + std::exp(-hb[i]))) * hb2[i];
      }
      RefMatmul(xb.data(), hb.data(), m.At(l.w2, layer), hidden, dim);
      for (int64_t i = 0; i < dim; ++i) x[i] += xb[i];
    }
    RefRmsNorm(x.data(), x.data(), m.At(l.rms_final), dim);
    const float* wcls = p.shared_classifier ? m.At(l.token_embedding) : m.At(l.wcls);
    RefMatmul(&logits(pos, 0), x.data(), wcls, dim, p.vocab_size);
  }
  return logits;
}

TEST(LlamaForward, Stories260KMatchesLlama2cForward) {
  CATQ_REQUIRE_SHARED();
  const std::string bin = testing::SharedPath("models/stories260K/stories260K.bin");
  const std::string tok_path = testing::SharedPath("models/stories260K/tok512.bin");
  testing::TempDir dir;
  ASSERT_OK(ImportLlama2c(Env::Default(), bin, tok_path, dir.path()));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  absl::StatusOr<Llama2cTokenizer> tok =
      Llama2cTokenizer::Load(Env::Default(), tok_path, model->config().vocab_size);
  ASSERT_OK(tok);
  const std::vector<int32_t> ids = tok->Encode(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park with her friends.",
      /*add_bos=*/true);
  ASSERT_GT(ids.size(), 20u);

  absl::StatusOr<Llama2cReference> ref = LoadLlama2cReference(bin);
  ASSERT_OK(ref);
  const RowMatrixXf expected = Llama2cForward(*ref, ids);
  absl::StatusOr<RowMatrixXf> logits = ComputeLogits(*model, ids);
  ASSERT_OK(logits);
  ASSERT_EQ(logits->rows(), static_cast<Eigen::Index>(ids.size()));
  ASSERT_EQ(logits->cols(), 512);
  const float max_diff = (*logits - expected).cwiseAbs().maxCoeff();
  RecordProperty("max_abs_logit_diff", std::to_string(max_diff));
  EXPECT_LT(max_diff, 1e-4f);
  // Not vacuous: the logits are far from constant.
  EXPECT_GT(expected.cwiseAbs().maxCoeff(), 1.0f);
}

// ---------------------------------------------------------------------------
// A tiny synthetic model with grouped-query attention, against a naive
// per-token implementation of the Hugging Face Llama forward pass in double.

LlamaConfig TinyConfig(bool tied) {
  LlamaConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;  // Two query heads per kv head.
  c.vocab_size = 40;
  c.max_position_embeddings = 48;
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = tied;
  return c;
}

// Writes config.json and model.safetensors with random weights (norm gains
// around 1, everything else N(0, 0.5^2)), in `dtype`.
absl::Status WriteTinyModel(const std::string& dir, const LlamaConfig& config, uint64_t seed,
                            DType dtype = DType::kF32) {
  Env* env = Env::Default();
  std::vector<TensorSpec> specs;
  for (const ExpectedTensor& t : ExpectedLlamaTensors(config)) {
    specs.push_back({t.name, dtype, t.shape});
  }
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(env, dir + "/model.safetensors", specs);
  if (!writer.ok()) return writer.status();
  GaussianGenerator gen(seed);
  for (const TensorSpec& spec : specs) {
    const bool is_norm = spec.shape.size() == 1;
    const uint64_t count = spec.NumBytes() / DTypeSize(dtype);
    std::string bytes;
    for (uint64_t i = 0; i < count; ++i) {
      const float value =
          static_cast<float>(is_norm ? 1.0 + 0.2 * gen.Normal() : 0.5 * gen.Normal());
      if (dtype == DType::kF32) {
        testing::AppendRaw(bytes, value);
      } else {
        testing::AppendRaw(bytes, FloatToBFloat16(value));
      }
    }
    absl::Status s = (*writer)->Append(bytes);
    if (!s.ok()) return s;
  }
  absl::Status s = (*writer)->Finish();
  if (!s.ok()) return s;
  return WriteFileAtomically(env, dir + "/config.json", LlamaConfigToJson(config));
}

RowMatrixXd GetDouble(const LlamaModel& model, const std::string& name) {
  absl::StatusOr<RowMatrixXf> m = model.GetMatrix(name);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? RowMatrixXd(m->cast<double>()) : RowMatrixXd();
}

Eigen::VectorXd GetVector(const LlamaModel& model, const std::string& name) {
  absl::StatusOr<std::vector<float>> v = model.GetFloat(name);
  EXPECT_TRUE(v.ok()) << v.status();
  Eigen::VectorXd out(v.ok() ? static_cast<Eigen::Index>(v->size()) : 0);
  for (Eigen::Index i = 0; i < out.size(); ++i) out(i) = (*v)[static_cast<size_t>(i)];
  return out;
}

Eigen::VectorXd NaiveRmsNorm(const Eigen::VectorXd& x, const Eigen::VectorXd& g, double eps) {
  const double inv = 1.0 / std::sqrt(x.squaredNorm() / static_cast<double>(x.size()) + eps);
  return (x.array() * inv * g.array()).matrix();
}

// Rotate-half RoPE of one head vector at position `pos`.
Eigen::VectorXd NaiveRope(const Eigen::VectorXd& x, int64_t pos, double theta) {
  const int64_t hd = x.size(), half = hd / 2;
  Eigen::VectorXd out(hd);
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * std::pow(theta, -2.0 * i / hd);
    out(i) = x(i) * std::cos(angle) - x(i + half) * std::sin(angle);
    out(i + half) = x(i + half) * std::cos(angle) + x(i) * std::sin(angle);
  }
  return out;
}

RowMatrixXd NaiveForward(const LlamaModel& model, const std::vector<int32_t>& tokens) {
  const LlamaConfig& c = model.config();
  const int64_t T = static_cast<int64_t>(tokens.size()), d = c.hidden_size, hd = c.head_dim();
  const RowMatrixXd embed = GetDouble(model, kEmbedTokensName);
  std::vector<Eigen::VectorXd> h(T);
  for (int64_t t = 0; t < T; ++t) h[t] = embed.row(tokens[t]).transpose();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto W = [&](LinearKind k) { return GetDouble(model, LinearWeightName(l, k)); };
    const RowMatrixXd wq = W(LinearKind::kQProj), wk = W(LinearKind::kKProj),
                      wv = W(LinearKind::kVProj), wo = W(LinearKind::kOProj),
                      wg = W(LinearKind::kGateProj), wu = W(LinearKind::kUpProj),
                      wd = W(LinearKind::kDownProj);
    const Eigen::VectorXd g1 = GetVector(model, NormWeightName(l, NormKind::kInputLayernorm));
    const Eigen::VectorXd g2 =
        GetVector(model, NormWeightName(l, NormKind::kPostAttentionLayernorm));
    std::vector<Eigen::VectorXd> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const Eigen::VectorXd x = NaiveRmsNorm(h[t], g1, c.rms_norm_eps);
      q[t] = wq * x;
      k[t] = wk * x;
      v[t] = wv * x;
      for (int64_t head = 0; head < c.num_attention_heads; ++head) {
        q[t].segment(head * hd, hd) = NaiveRope(q[t].segment(head * hd, hd), t, c.rope_theta);
      }
      for (int64_t head = 0; head < c.num_key_value_heads; ++head) {
        k[t].segment(head * hd, hd) = NaiveRope(k[t].segment(head * hd, hd), t, c.rope_theta);
      }
    }
    const int64_t group = c.num_attention_heads / c.num_key_value_heads;
    for (int64_t t = 0; t < T; ++t) {
      Eigen::VectorXd attn = Eigen::VectorXd::Zero(d);
      for (int64_t head = 0; head < c.num_attention_heads; ++head) {
        const int64_t kvh = head / group;
        std::vector<double> p(t + 1);
        double max = -1e300, sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) {
          p[j] = q[t].segment(head * hd, hd).dot(k[j].segment(kvh * hd, hd)) / std::sqrt(hd * 1.0);
          max = std::max(max, p[j]);
        }
        for (int64_t j = 0; j <= t; ++j) sum += p[j] = std::exp(p[j] - max);
        for (int64_t j = 0; j <= t; ++j) {
          attn.segment(head * hd, hd) += p[j] / sum * v[j].segment(kvh * hd, hd);
        }
      }
      h[t] += wo * attn;
    }
    for (int64_t t = 0; t < T; ++t) {
      const Eigen::VectorXd x = NaiveRmsNorm(h[t], g2, c.rms_norm_eps);
      const Eigen::ArrayXd gate = (wg * x).array(), up = (wu * x).array();
      const Eigen::VectorXd m = (gate / (1.0 + (-gate).exp()) * up).matrix();
      h[t] += wd * m;
    }
  }
  const Eigen::VectorXd gf = GetVector(model, kFinalNormName);
  const RowMatrixXd head = c.tie_word_embeddings ? embed : GetDouble(model, kLmHeadName);
  RowMatrixXd logits(T, c.vocab_size);
  for (int64_t t = 0; t < T; ++t) {
    logits.row(t) = (head * NaiveRmsNorm(h[t], gf, c.rms_norm_eps)).transpose();
  }
  return logits;
}

class TinyModelTest : public ::testing::TestWithParam<bool> {};

TEST_P(TinyModelTest, GqaForwardMatchesNaiveReference) {
  const bool tied = GetParam();
  testing::TempDir dir;
  ASSERT_OK(WriteTinyModel(dir.path(), TinyConfig(tied), tied ? 11 : 12));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  EXPECT_EQ(model->lm_head_name(), tied ? kEmbedTokensName : kLmHeadName);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 48; ++i) tokens.push_back((i * 7 + 3) % 40);  // The full context.
  const RowMatrixXd expected = NaiveForward(*model, tokens);
  absl::StatusOr<RowMatrixXf> logits = ComputeLogits(*model, tokens);
  ASSERT_OK(logits);
  const double max_diff = (logits->cast<double>() - expected).cwiseAbs().maxCoeff();
  EXPECT_LT(max_diff, 1e-4) << "max |logit| " << expected.cwiseAbs().maxCoeff();
  EXPECT_GT(expected.cwiseAbs().maxCoeff(), 1.0);
}

INSTANTIATE_TEST_SUITE_P(TiedAndUntied, TinyModelTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tied" : "Untied";
                         });

TEST(LlamaForward, Bf16WeightsMatchNaiveReference) {
  testing::TempDir dir;
  ASSERT_OK(WriteTinyModel(dir.path(), TinyConfig(false), 13, DType::kBF16));
  absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir.path());
  ASSERT_OK(model);
  const std::vector<int32_t> tokens = {1, 5, 9, 39, 0, 17};
  const RowMatrixXd expected = NaiveForward(*model, tokens);
  absl::StatusOr<RowMatrixXf> logits = ComputeLogits(*model, tokens);
  ASSERT_OK(logits);
  EXPECT_LT((logits->cast<double>() - expected).cwiseAbs().maxCoeff(), 1e-4);
}

// ---------------------------------------------------------------------------
// Batching, threads, NLL, hooks, providers, errors.

class ForwardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(WriteTinyModel(dir_.path(), TinyConfig(false), 21));
    absl::StatusOr<LlamaModel> model = LlamaModel::Open(dir_.path());
    ASSERT_OK(model);
    model_ = std::make_unique<LlamaModel>(std::move(*model));
    for (int s = 0; s < 5; ++s) {
      std::vector<int32_t> seq;
      for (int t = 0; t < 3 + 9 * s; ++t) seq.push_back((t * 13 + s * 5 + 1) % 40);
      sequences_.push_back(seq);
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<std::vector<int32_t>> sequences_;
};

TEST_F(ForwardTest, TokenNllIsLogSoftmaxOfLogits) {
  absl::StatusOr<std::vector<std::vector<float>>> nll = ComputeTokenNll(*model_, sequences_);
  ASSERT_OK(nll);
  ASSERT_EQ(nll->size(), sequences_.size());
  for (size_t s = 0; s < sequences_.size(); ++s) {
    absl::StatusOr<RowMatrixXf> logits = ComputeLogits(*model_, sequences_[s]);
    ASSERT_OK(logits);
    ASSERT_EQ((*nll)[s].size(), sequences_[s].size() - 1);
    for (size_t t = 0; t + 1 < sequences_[s].size(); ++t) {
      const Eigen::ArrayXd row = logits->row(static_cast<Eigen::Index>(t)).cast<double>();
      const double lse = std::log((row - row.maxCoeff()).exp().sum()) + row.maxCoeff();
      EXPECT_NEAR((*nll)[s][t], lse - row(sequences_[s][t + 1]), 1e-5);
    }
  }
}

TEST_F(ForwardTest, ResultsDoNotDependOnThreadsOrBatching) {
  ForwardOptions one;
  one.num_threads = 1;
  absl::StatusOr<std::vector<std::vector<float>>> base = ComputeTokenNll(*model_, sequences_, one);
  ASSERT_OK(base);
  ForwardOptions many;
  many.num_threads = 3;
  many.max_batch_tokens = 25;  // Several batches; the longest sequence alone.
  many.cache_limit_bytes = 0;  // Convert the weights afresh for every batch.
  absl::StatusOr<std::vector<std::vector<float>>> other =
      ComputeTokenNll(*model_, sequences_, many);
  ASSERT_OK(other);
  EXPECT_EQ(*base, *other);  // Bit for bit.

  // Smaller logits chunks give BLAS other shapes, whose kernels may round the
  // last bit differently.
  ForwardOptions chunked;
  chunked.logits_chunk_rows = 4;
  absl::StatusOr<std::vector<std::vector<float>>> chunks =
      ComputeTokenNll(*model_, sequences_, chunked);
  ASSERT_OK(chunks);
  ASSERT_EQ(chunks->size(), base->size());
  for (size_t s = 0; s < base->size(); ++s) {
    ASSERT_EQ((*chunks)[s].size(), (*base)[s].size());
    for (size_t t = 0; t < (*base)[s].size(); ++t) {
      EXPECT_NEAR((*chunks)[s][t], (*base)[s][t], 1e-5) << s << "," << t;
    }
  }
}

TEST_F(ForwardTest, ModelWeightProviderCachesSmallModels) {
  ModelWeightProvider cached(*model_);
  EXPECT_TRUE(cached.caching());
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> a = cached.Linear(1, LinearKind::kUpProj);
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> b = cached.Linear(1, LinearKind::kUpProj);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->get(), b->get());
  ModelWeightProvider uncached(*model_, /*cache_limit_bytes=*/1000);
  EXPECT_FALSE(uncached.caching());
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> c = uncached.Linear(1, LinearKind::kUpProj);
  ASSERT_OK(c);
  EXPECT_NE(c->get(), a->get());
  EXPECT_EQ(**c, **a);
  EXPECT_STATUS(cached.Linear(2, LinearKind::kQProj), absl::StatusCode::kInvalidArgument,
                "layer 2 is out of range");
}

// Records what every site call sees.
class RecordingHook : public SiteHook {
 public:
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> activations) override {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    seen_[Key(call.layer, call.site, call.sequence)] = activations;
    return absl::OkStatus();
  }

  static std::string Key(int64_t layer, Site site, int64_t sequence) {
    return std::to_string(layer) + "/" + std::string(SiteName(site)) + "/" +
           std::to_string(sequence);
  }

  absl::Mutex mu_;
  std::vector<SiteCall> calls_;
  std::map<std::string, RowMatrixXf> seen_;
};

TEST_F(ForwardTest, HooksSeeEverySiteWithItsShape) {
  RecordingHook hook;
  ForwardOptions options;
  options.num_threads = 2;
  options.hooks = {&hook};
  ASSERT_OK(RunForward(*model_, sequences_, options));  // No visitor: hooks only.
  const LlamaConfig& c = model_->config();
  EXPECT_EQ(hook.calls_.size(), sequences_.size() * 4 * c.num_hidden_layers);
  for (const SiteCall& call : hook.calls_) {
    EXPECT_GE(call.worker, 0);
    EXPECT_LT(call.worker, 2);
  }
  for (size_t s = 0; s < sequences_.size(); ++s) {
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
      for (Site site : kAllSites) {
        const RowMatrixXf& x = hook.seen_[RecordingHook::Key(layer, site, s)];
        EXPECT_EQ(x.rows(), static_cast<Eigen::Index>(sequences_[s].size()));
        EXPECT_EQ(x.cols(), SiteDim(c, site)) << SiteName(site);
      }
      // mlp_out = silu(gate_proj(mlp_in)) * up_proj(mlp_in).
      const RowMatrixXf& mlp_in = hook.seen_[RecordingHook::Key(layer, Site::kMlpIn, s)];
      absl::StatusOr<RowMatrixXf> wg = model_->LinearWeight(layer, LinearKind::kGateProj);
      absl::StatusOr<RowMatrixXf> wu = model_->LinearWeight(layer, LinearKind::kUpProj);
      ASSERT_OK(wg);
      ASSERT_OK(wu);
      const Eigen::ArrayXXf gate = (mlp_in * wg->transpose()).array();
      const Eigen::ArrayXXf up = (mlp_in * wu->transpose()).array();
      const RowMatrixXf expected = (gate / (1.0f + (-gate).exp()) * up).matrix();
      const RowMatrixXf& mlp_out = hook.seen_[RecordingHook::Key(layer, Site::kMlpOut, s)];
      EXPECT_LT((mlp_out - expected).cwiseAbs().maxCoeff(), 1e-5f);
    }
    // attn_in of layer 0 is input_layernorm of the embeddings.
    absl::StatusOr<RowMatrixXf> embed = model_->GetMatrix(kEmbedTokensName);
    absl::StatusOr<std::vector<float>> gain =
        model_->GetFloat(NormWeightName(0, NormKind::kInputLayernorm));
    ASSERT_OK(embed);
    ASSERT_OK(gain);
    const RowMatrixXf& attn_in = hook.seen_[RecordingHook::Key(0, Site::kAttnIn, s)];
    for (size_t t = 0; t < sequences_[s].size(); ++t) {
      const Eigen::RowVectorXf e = embed->row(sequences_[s][t]);
      const float inv = 1.0f / std::sqrt(e.squaredNorm() / e.size() + 1e-6f);
      for (Eigen::Index j = 0; j < e.size(); ++j) {
        EXPECT_NEAR(attn_in(static_cast<Eigen::Index>(t), j), e(j) * inv * (*gain)[j], 1e-5f);
      }
    }
  }
}

// Scales the activations of one site of one layer in place.
class ScaleHook : public SiteHook {
 public:
  ScaleHook(int64_t layer, Site site, float factor) : layer_(layer), site_(site), factor_(factor) {}
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf> x) override {
    if (call.layer == layer_ && call.site == site_) x *= factor_;
    return absl::OkStatus();
  }

 private:
  int64_t layer_;
  Site site_;
  float factor_;
};

// Scales one linear's weight.
class ScaledLinearProvider : public ModelWeightProvider {
 public:
  ScaledLinearProvider(const LlamaModel& model, int64_t layer, LinearKind kind, float factor)
      : ModelWeightProvider(model), layer_(layer), kind_(kind), factor_(factor) {}
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                            LinearKind kind) override {
    absl::StatusOr<std::shared_ptr<const RowMatrixXf>> w = ModelWeightProvider::Linear(layer, kind);
    if (!w.ok() || layer != layer_ || kind != kind_) return w;
    return std::make_shared<const RowMatrixXf>(**w * factor_);
  }

 private:
  int64_t layer_;
  LinearKind kind_;
  float factor_;
};

TEST_F(ForwardTest, HookChangesReachTheLinears) {
  // Doubling o_proj's input equals doubling o_proj's weight; likewise for
  // down_proj and mlp_out.
  for (const auto& [site, kind] : {std::pair{Site::kAttnOut, LinearKind::kOProj},
                                   std::pair{Site::kMlpOut, LinearKind::kDownProj}}) {
    ScaleHook hook(1, site, 2.0f);
    ForwardOptions with_hook;
    with_hook.hooks = {&hook};
    absl::StatusOr<RowMatrixXf> a = ComputeLogits(*model_, sequences_[2], with_hook);
    ScaledLinearProvider provider(*model_, 1, kind, 2.0f);
    ForwardOptions with_provider;
    with_provider.weights = &provider;
    absl::StatusOr<RowMatrixXf> b = ComputeLogits(*model_, sequences_[2], with_provider);
    absl::StatusOr<RowMatrixXf> plain = ComputeLogits(*model_, sequences_[2]);
    ASSERT_OK(a);
    ASSERT_OK(b);
    ASSERT_OK(plain);
    EXPECT_LT((*a - *b).cwiseAbs().maxCoeff(), 1e-4f) << SiteName(site);
    EXPECT_GT((*a - *plain).cwiseAbs().maxCoeff(), 1e-2f) << SiteName(site);
  }
}

class FailingHook : public SiteHook {
 public:
  absl::Status OnSite(const SiteCall& call, Eigen::Ref<RowMatrixXf>) override {
    if (call.layer == 1 && call.site == Site::kMlpIn) {
      return absl::AbortedError("hook gave up");
    }
    return absl::OkStatus();
  }
};

class WrongShapeProvider : public ModelWeightProvider {
 public:
  using ModelWeightProvider::ModelWeightProvider;
  absl::StatusOr<std::shared_ptr<const RowMatrixXf>> Linear(int64_t layer,
                                                            LinearKind kind) override {
    if (kind == LinearKind::kVProj) return std::make_shared<const RowMatrixXf>(3, 16);
    return ModelWeightProvider::Linear(layer, kind);
  }
};

TEST_F(ForwardTest, Errors) {
  const LlamaModel& m = *model_;
  EXPECT_STATUS(ComputeLogits(m, {}), absl::StatusCode::kInvalidArgument, "sequence 0 is empty");
  EXPECT_STATUS(ComputeTokenNll(m, std::vector<std::vector<int32_t>>{{1, 2}, {1, 40}}),
                absl::StatusCode::kInvalidArgument,
                "sequence 1, position 1: token id 40 is outside [0, vocab_size 40)");
  EXPECT_STATUS(ComputeLogits(m, std::vector<int32_t>{-3}), absl::StatusCode::kInvalidArgument,
                "token id -3");
  EXPECT_STATUS(ComputeLogits(m, std::vector<int32_t>(49, 1)), absl::StatusCode::kInvalidArgument,
                "sequence 0 has 49 tokens, more than max_position_embeddings 48");
  ForwardOptions bad_batch;
  bad_batch.max_batch_tokens = 0;
  EXPECT_STATUS(ComputeLogits(m, std::vector<int32_t>{1}, bad_batch),
                absl::StatusCode::kInvalidArgument, "max_batch_tokens");

  FailingHook failing;
  ForwardOptions with_failing;
  with_failing.hooks = {&failing};
  with_failing.num_threads = 2;
  EXPECT_STATUS(RunForward(m, sequences_, with_failing), absl::StatusCode::kAborted,
                "hook gave up");

  WrongShapeProvider wrong(m);
  ForwardOptions with_wrong;
  with_wrong.weights = &wrong;
  EXPECT_STATUS(ComputeLogits(m, std::vector<int32_t>{1, 2}, with_wrong),
                absl::StatusCode::kInvalidArgument,
                "model.layers.0.self_attn.v_proj.weight: provider gave shape [3, 16], expected "
                "[8, 16]");
}

// ---------------------------------------------------------------------------
// K/V cache hooks.

// Records the keys and values of every call; optionally zeros the values or
// fails at one layer.
class RecordingKvHook : public KvCacheHook {
 public:
  absl::Status OnKeysValues(const KvCacheCall& call, Eigen::Ref<RowMatrixXf> keys,
                            Eigen::Ref<RowMatrixXf> values) override {
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
      keys_[{call.layer, call.sequence}] = keys;
      values_[{call.layer, call.sequence}] = values;
    }
    if (fail_at_layer_ == call.layer) return absl::AbortedError("kv hook gave up");
    if (zero_values_) values.setZero();
    return absl::OkStatus();
  }

  bool zero_values_ = false;
  int64_t fail_at_layer_ = -1;
  absl::Mutex mu_;
  std::vector<KvCacheCall> calls_;
  std::map<std::pair<int64_t, int64_t>, RowMatrixXf> keys_, values_;
};

TEST_F(ForwardTest, KvHookSeesPostRopeKeysAndValuesOfEveryLayer) {
  RecordingKvHook hook;
  ForwardOptions options;
  options.num_threads = 2;
  options.kv_hooks = {&hook};
  ASSERT_OK(RunForward(*model_, sequences_, options));
  const LlamaConfig& c = model_->config();
  EXPECT_EQ(hook.calls_.size(), sequences_.size() * c.num_hidden_layers);
  for (const KvCacheCall& call : hook.calls_) {
    EXPECT_GE(call.worker, 0);
    EXPECT_LT(call.worker, 2);
  }
  // Layer 0 reads input_layernorm of the embeddings: k = RoPE(k_proj x),
  // v = v_proj x, computed naively in double.
  const RowMatrixXd embed = GetDouble(*model_, kEmbedTokensName);
  const Eigen::VectorXd gain = GetVector(*model_, NormWeightName(0, NormKind::kInputLayernorm));
  const RowMatrixXd wk = GetDouble(*model_, LinearWeightName(0, LinearKind::kKProj));
  const RowMatrixXd wv = GetDouble(*model_, LinearWeightName(0, LinearKind::kVProj));
  const int64_t hd = c.head_dim();
  for (size_t s = 0; s < sequences_.size(); ++s) {
    const RowMatrixXf& keys = hook.keys_[{0, static_cast<int64_t>(s)}];
    const RowMatrixXf& values = hook.values_[{0, static_cast<int64_t>(s)}];
    ASSERT_EQ(keys.rows(), static_cast<Eigen::Index>(sequences_[s].size()));
    ASSERT_EQ(keys.cols(), c.kv_dim());
    ASSERT_EQ(values.cols(), c.kv_dim());
    for (size_t t = 0; t < sequences_[s].size(); ++t) {
      const Eigen::VectorXd x =
          NaiveRmsNorm(embed.row(sequences_[s][t]).transpose(), gain, c.rms_norm_eps);
      Eigen::VectorXd k = wk * x;
      for (int64_t head = 0; head < c.num_key_value_heads; ++head) {
        k.segment(head * hd, hd) =
            NaiveRope(k.segment(head * hd, hd), static_cast<int64_t>(t), c.rope_theta);
      }
      const Eigen::VectorXd v = wv * x;
      const auto row = static_cast<Eigen::Index>(t);
      EXPECT_LT((keys.row(row).transpose().cast<double>() - k).cwiseAbs().maxCoeff(), 1e-5)
          << "sequence " << s << ", position " << t;
      EXPECT_LT((values.row(row).transpose().cast<double>() - v).cwiseAbs().maxCoeff(), 1e-5);
    }
  }
}

TEST_F(ForwardTest, KvHookChangesReachAttention) {
  absl::StatusOr<RowMatrixXf> plain = ComputeLogits(*model_, sequences_[3]);
  ASSERT_OK(plain);
  // A hook that only looks leaves every bit as it was.
  RecordingKvHook looking;
  ForwardOptions with_looking;
  with_looking.kv_hooks = {&looking};
  absl::StatusOr<RowMatrixXf> looked = ComputeLogits(*model_, sequences_[3], with_looking);
  ASSERT_OK(looked);
  EXPECT_EQ(*looked, *plain);
  // Zero values make every attention output zero: the logits are those of
  // the model without attention, far from the plain ones.
  RecordingKvHook zeroing;
  zeroing.zero_values_ = true;
  ForwardOptions with_zeroing;
  with_zeroing.kv_hooks = {&zeroing};
  absl::StatusOr<RowMatrixXf> zeroed = ComputeLogits(*model_, sequences_[3], with_zeroing);
  ASSERT_OK(zeroed);
  EXPECT_GT((*zeroed - *plain).cwiseAbs().maxCoeff(), 1e-2f);
  // The same as scaling o_proj's input (the attention output) by zero.
  ScaleHook no_attention(0, Site::kAttnOut, 0.0f);
  ScaleHook no_attention_1(1, Site::kAttnOut, 0.0f);
  ForwardOptions with_site_zero;
  with_site_zero.hooks = {&no_attention, &no_attention_1};
  absl::StatusOr<RowMatrixXf> site_zeroed = ComputeLogits(*model_, sequences_[3], with_site_zero);
  ASSERT_OK(site_zeroed);
  EXPECT_EQ(*zeroed, *site_zeroed);
}

TEST_F(ForwardTest, KvHookErrorStopsTheForwardPass) {
  RecordingKvHook failing;
  failing.fail_at_layer_ = 1;
  ForwardOptions options;
  options.num_threads = 2;
  options.kv_hooks = {&failing};
  EXPECT_STATUS(RunForward(*model_, sequences_, options), absl::StatusCode::kAborted,
                "kv hook gave up");
}

}  // namespace
}  // namespace catq
