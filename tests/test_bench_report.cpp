// The bench bookkeeping: statistics, JSON round trip and schema errors, the regression guard.
#include <gtest/gtest.h>

#include "fathom/bench.h"
#include "fathom/error.h"

using namespace fathom::bench;

TEST(BenchStats, MedianAndP95InterpolateLikeNumpy) {
  // numpy.percentile([5,1,4,2,3], [50, 95]) == [3.0, 4.8]
  Stats s = summarize({5, 1, 4, 2, 3});
  EXPECT_EQ(s.n, 5);
  EXPECT_DOUBLE_EQ(s.median, 3.0);
  EXPECT_NEAR(s.p95, 4.8, 1e-12);
  EXPECT_DOUBLE_EQ(s.min, 1.0);
  EXPECT_DOUBLE_EQ(s.max, 5.0);
  EXPECT_DOUBLE_EQ(s.mean, 3.0);
  EXPECT_NEAR(s.stddev, 1.5811388300841898, 1e-12);  // sample stddev
  EXPECT_NEAR(s.spread, (4.8 - 1.0) / 3.0, 1e-12);
  // Even count: median is the mean of the middle two.
  EXPECT_DOUBLE_EQ(summarize({4, 1, 3, 2}).median, 2.5);
  EXPECT_DOUBLE_EQ(summarize({7}).p95, 7.0);
  EXPECT_EQ(summarize({}).n, 0);
}

static Report sample_report(double tg_tps, double tg_spread = 0.01) {
  Report r;
  r.model = "m.gguf";
  r.type = "Q4_K_M";
  r.shape = "llama3-8b";
  r.model_bytes = 4.9e9;
  r.ceiling_gbps = 4300;
  r.gpu_name = "NVIDIA H200";
  Result pp;
  pp.test = "pp512";
  pp.n_tokens = 512;
  pp.gpu_ms = summarize({50.8, 51, 51.2});
  pp.tok_per_s = 10000;
  pp.achieved = 300;
  Result tg;
  tg.test = "tg128";
  tg.depth = 512;
  tg.n_tokens = 128;
  tg.gpu_ms = summarize({100, 100, 100});
  tg.gpu_ms.spread = tg_spread;
  tg.tok_per_s = tg_tps;
  tg.ms_per_tok = 1000.0 / tg_tps;
  tg.achieved = 2000;
  r.results = {pp, tg};
  return r;
}

TEST(BenchJson, RoundTripKeepsEveryNumber) {
  Report r = sample_report(400);
  r.max_kv_tokens = 123456;
  r.command = "fathom bench --synthetic llama3-8b";
  Report back = from_json(to_json(r));
  EXPECT_EQ(back.model, r.model);
  EXPECT_EQ(back.shape, r.shape);
  EXPECT_EQ(back.max_kv_tokens, 123456);
  EXPECT_EQ(back.command, r.command);
  ASSERT_EQ(back.results.size(), 2u);
  EXPECT_EQ(back.results[1].test, "tg128");
  EXPECT_EQ(back.results[1].depth, 512);
  EXPECT_DOUBLE_EQ(back.results[1].tok_per_s, 400);
  EXPECT_DOUBLE_EQ(back.results[0].gpu_ms.median, 51);
  EXPECT_EQ(to_json(back), to_json(r));
}

TEST(BenchJson, MalformedFilesGiveOneClearError) {
  EXPECT_THROW(from_json("{not json"), fathom::Error);
  EXPECT_THROW(from_json("{\"schema\": \"other/1\"}"), fathom::Error);
  EXPECT_THROW(from_json("{\"schema\": \"fathom-bench/1\"}"), fathom::Error);
  try {
    from_json("{\"schema\": \"fathom-bench/9\"}");
    FAIL();
  } catch (const fathom::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fathom-bench/9"), std::string::npos);
  }
}

TEST(BenchCompare, FlagsOnlyRegressionsBeyondTheThreshold) {
  Report base = sample_report(400);
  EXPECT_FALSE(compare(sample_report(395), base, 0.03).failed());  // -1.25%: within 3%
  EXPECT_FALSE(compare(sample_report(480), base, 0.03).failed());  // faster is fine
  Comparison c = compare(sample_report(380), base, 0.03);          // -5%
  ASSERT_TRUE(c.failed());
  ASSERT_EQ(c.regressions.size(), 1u);
  EXPECT_NE(c.regressions[0].find("tg128"), std::string::npos);
  EXPECT_NE(c.regressions[0].find("-5.0%"), std::string::npos);
}

TEST(BenchCompare, WarnsWhenSpreadExceedsThresholdAndNotesMissingTests) {
  Report base = sample_report(400);
  Comparison c = compare(sample_report(400, 0.10), base, 0.03);
  EXPECT_FALSE(c.failed());
  EXPECT_EQ(c.warnings.size(), 1u);
  Report cur = sample_report(400);
  cur.results.pop_back();
  Comparison c2 = compare(cur, base, 0.03);
  EXPECT_EQ(c2.notes.size(), 1u);
}

TEST(BenchCompare, ParsesThresholds) {
  EXPECT_DOUBLE_EQ(parse_fraction("3%"), 0.03);
  EXPECT_DOUBLE_EQ(parse_fraction("0.03"), 0.03);
  EXPECT_DOUBLE_EQ(parse_fraction("5"), 0.05);
  EXPECT_THROW(parse_fraction("abc"), fathom::Error);
  EXPECT_THROW(parse_fraction("-1"), fathom::Error);
}

TEST(BenchTable, HasOneRowPerResult) {
  std::string t = markdown_table(sample_report(400));
  EXPECT_NE(t.find("| llama3-8b | 4.90 GB | Q4_K_M | pp512 |"), std::string::npos) << t;
  EXPECT_NE(t.find("tg128 @ d512"), std::string::npos) << t;
  EXPECT_NE(t.find("GB/s"), std::string::npos);
  EXPECT_NE(t.find("TFLOP/s"), std::string::npos);
}

#include "fathom/sha256.h"

TEST(Sha256, KnownVectors) {
  auto hex = [](const std::string& s) {
    fathom::Sha256 h;
    h.update(s.data(), s.size());
    return h.hex_digest();
  };
  EXPECT_EQ(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  EXPECT_EQ(hex(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(BenchJson, ReadsOneReportOrAnArray) {
  const std::string one = to_json(sample_report(400));
  EXPECT_EQ(reports_from_json(one).size(), 1u);
  const std::string two = "[" + one + "," + to_json(sample_report(300)) + "]";
  auto v = reports_from_json(two);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_DOUBLE_EQ(v[1].results[1].tok_per_s, 300);
  EXPECT_THROW(reports_from_json("[1, 2]"), fathom::Error);
}
