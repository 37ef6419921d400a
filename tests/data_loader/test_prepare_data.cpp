// `openlm prepare-data` (issue 12 parts 3-4): determinism across thread counts and the external
// shuffle, every token exactly once, compressed and folder inputs, source weights, bad lines with
// FILE:LINE messages and counts, restarts into a used directory, and the CLI surface.
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "data_loader/data_tools.h"
#include "data_loader/doc_reader.h"
#include "data_loader/prepare_data.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "test_util.h"

using namespace openlm::data;
using namespace openlm::data::test;
namespace stdfs = std::filesystem;

namespace {

const std::string kNeox = std::string(OPENLM_SOURCE_DIR) + "/tests/tokenizer/data/neox_tiny_tokenizer.json";

std::string words(std::mt19937& rng, int n) {
  static const char* lex[] = {"the",   "model",   "reads", "tokens", "from",  "shards", "while", "ranks",  "share",
                              "batch", "quickly", "and",   "resume", "after", "a",      "café",  "naïve", "über"};
  std::string s;
  for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + lex[rng() % (sizeof lex / sizeof *lex)];
  return s;
}

/// `n` JSONL records {"id", "text"} with texts of 1..60 words.
std::vector<std::string> make_docs(unsigned seed, int n) {
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i) docs.push_back(words(rng, 1 + static_cast<int>(rng() % 60)));
  return docs;
}

std::string jsonl(const std::vector<std::string>& docs) {
  std::string s;
  for (size_t i = 0; i < docs.size(); ++i) s += nlohmann::json{{"id", i}, {"text", docs[i]}}.dump() + "\n";
  return s;
}

std::string zstd_compress(const std::string& s) {
  std::string out(ZSTD_compressBound(s.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), s.data(), s.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string gzip(const std::string& s) {
  auto gz = gzip_compress(s.data(), s.size());
  return std::string(gz.begin(), gz.end());
}

PrepareOptions options(const std::vector<std::string>& inputs, const std::string& out, int64_t seq_len = 31) {
  PrepareOptions o;
  for (auto& i : inputs) o.inputs.push_back(parse_input_spec(i));
  o.tokenizer_path = kNeox;
  o.output_dir = out;
  o.seq_len = seq_len;
  o.seed = 1234;
  o.shard_sequences = 40;
  return o;
}

/// Every regular file below dir -> its bytes (names relative to dir).
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> m;
  for (auto& e : stdfs::recursive_directory_iterator(dir))
    m[stdfs::relative(e.path(), dir).string()] = e.is_regular_file() ? read_file(e.path().string()) : "<dir>";
  return m;
}

/// The concatenated stream prepare-data cuts: encode(doc) + eot for every document in order.
std::vector<int64_t> stream_of(const std::vector<std::string>& docs) {
  auto tok = openlm::load_tokenizer("auto", kNeox);
  std::vector<int64_t> s;
  for (auto& d : docs) {
    for (int32_t id : tok->encode(d)) s.push_back(id);
    s.push_back(tok->eos_id());
  }
  return s;
}

std::string cli_bin() { return OPENLM_DATA_CLI; }

}  // namespace

TEST(PrepareData, ByteIdenticalForThreadCountsAndExternalShuffle) {
  auto dir = temp_dir("prep_det");
  write_file(dir + "/a.jsonl", jsonl(make_docs(1, 400)));
  write_file(dir + "/b.txt", make_docs(2, 1)[0] + "\n\n" + make_docs(3, 1)[0] + "\nline two\n");
  for (ShardFormat fmt : {ShardFormat::Native, ShardFormat::OpenLMTar}) {
    const std::string tag = format_name(fmt);
    auto o = options({dir + "/a.jsonl", dir + "/b.txt:2"}, dir + "/" + tag + "_t1");
    o.format = fmt;
    auto r1 = prepare_data(o);
    EXPECT_EQ(r1.shuffle_runs, 0);
    o.threads = 2;
    o.output_dir = dir + "/" + tag + "_t2";
    prepare_data(o);
    o.threads = 3;
    o.memory_budget_mb = 0.02;  // ~160 sequences of 32 tokens per run: forces the external merge
    o.output_dir = dir + "/" + tag + "_ext";
    auto r3 = prepare_data(o);
    EXPECT_GT(r3.shuffle_runs, 2);
    auto f1 = files_of(dir + "/" + tag + "_t1");
    EXPECT_GT(f1.size(), 4u);  // several shards + manifest + stats
    EXPECT_EQ(f1, files_of(dir + "/" + tag + "_t2")) << tag;
    EXPECT_EQ(f1, files_of(dir + "/" + tag + "_ext")) << tag;
    EXPECT_EQ(read_all_sequences(dir + "/" + tag + "_t1/manifest.jsonl").size(), static_cast<size_t>(r1.sequences));
  }
  // the CLI too, comparing every file for --threads 1 and 2
  for (int t : {1, 2}) {
    std::string out;
    ASSERT_EQ(run(cli_bin() + " prepare-data --input " + dir + "/a.jsonl --tokenizer " + kNeox + " --output " + dir +
                      "/cli" + std::to_string(t) + " --format openlm-tar --seq-len 31 --seed 5 --threads " +
                      std::to_string(t),
                  &out),
              0)
        << out;
    EXPECT_EQ(out.find('\r'), std::string::npos) << "a progress line although stderr is not a terminal";
  }
  EXPECT_EQ(files_of(dir + "/cli1"), files_of(dir + "/cli2"));
}

TEST(PrepareData, NoPadEveryTokenExactlyOnceAndPaddedTail) {
  auto dir = temp_dir("prep_once");
  auto docs = make_docs(7, 300);
  write_file(dir + "/a.jsonl", jsonl(docs));
  const auto stream = stream_of(docs);
  const size_t L = 32;
  ASSERT_NE(stream.size() % L, 0u) << "pick another corpus: the test wants a tail";
  std::multiset<std::vector<int64_t>> want;
  for (size_t i = 0; i + L <= stream.size(); i += L) want.insert({stream.begin() + i, stream.begin() + i + L});

  auto o = options({dir + "/a.jsonl"}, dir + "/nopad");
  o.no_pad = true;
  auto r = prepare_data(o);
  auto seqs = read_all_sequences(dir + "/nopad/manifest.jsonl");
  EXPECT_EQ(std::multiset<std::vector<int64_t>>(seqs.begin(), seqs.end()), want);
  EXPECT_EQ(r.stats["dropped_tail_tokens"], stream.size() % L);
  EXPECT_EQ(r.stats["padded_tokens"], 0);
  EXPECT_EQ(r.tokens, static_cast<int64_t>(stream.size()));
  EXPECT_EQ(r.documents, 300);
  // shuffled: not the input order
  std::vector<std::vector<int64_t>> in_order(want.size());
  for (size_t i = 0; i < in_order.size(); ++i) in_order[i].assign(stream.begin() + i * L, stream.begin() + (i + 1) * L);
  EXPECT_NE(seqs, in_order);

  // default (pad): the tail + <|padding|> (id 1 in the GPT-NeoX layout) is one more sequence
  o.no_pad = false;
  o.output_dir = dir + "/pad";
  r = prepare_data(o);
  std::vector<int64_t> tail(stream.end() - static_cast<std::ptrdiff_t>(stream.size() % L), stream.end());
  tail.resize(L, 1);
  want.insert(tail);
  seqs = read_all_sequences(dir + "/pad/manifest.jsonl");
  EXPECT_EQ(std::multiset<std::vector<int64_t>>(seqs.begin(), seqs.end()), want);
  EXPECT_EQ(r.stats["padded_tokens"], L - stream.size() % L);
  EXPECT_EQ(r.stats["pad_id"], 1);
  // another seed: same sequences, another order
  o.seed = 99;
  o.output_dir = dir + "/seed99";
  prepare_data(o);
  auto other = read_all_sequences(dir + "/seed99/manifest.jsonl");
  EXPECT_NE(other, seqs);
  EXPECT_EQ(std::multiset<std::vector<int64_t>>(other.begin(), other.end()), want);
}

TEST(PrepareData, GzipAndZstdInputsEqualPlain) {
  auto dir = temp_dir("prep_comp");
  auto docs = make_docs(11, 200);
  std::string half1 = jsonl({docs.begin(), docs.begin() + 100}), half2 = jsonl({docs.begin() + 100, docs.end()});
  write_file(dir + "/a.jsonl", half1 + half2);
  write_file(dir + "/a.jsonl.gz", gzip(half1) + gzip(half2));              // two gzip members
  write_file(dir + "/a.jsonl.zst", zstd_compress(half1) + zstd_compress(half2));  // two zstd frames
  auto shards = [&](const std::string& input) {
    auto o = options({dir + "/" + input}, dir + "/out_" + input);
    prepare_data(o);
    auto f = files_of(dir + "/out_" + input);
    f.erase("prepare_data.json");  // names the input file
    return f;
  };
  auto plain = shards("a.jsonl");
  EXPECT_EQ(plain, shards("a.jsonl.gz"));
  EXPECT_EQ(plain, shards("a.jsonl.zst"));
  // compression we cannot read is refused by name, not read as text
  write_file(dir + "/a.jsonl.xz", "\xfd" "7zXZ");
  EXPECT_THROW(prepare_data(options({dir + "/a.jsonl.xz"}, dir + "/out_xz")), openlm::ConfigError);
  // truncated compressed inputs are errors naming the file, never a silent short read
  for (std::string name : {"t.jsonl.gz", "t.jsonl.zst"}) {
    std::string full = read_file(dir + (name == "t.jsonl.gz" ? "/a.jsonl.gz" : "/a.jsonl.zst"));
    write_file(dir + "/" + name, full.substr(0, full.size() / 2));
    try {
      prepare_data(options({dir + "/" + name}, dir + "/out_" + name));
      FAIL() << name;
    } catch (const openlm::DataError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    }
  }
}

TEST(PrepareData, FolderInputIsItsSortedFiles) {
  auto dir = temp_dir("prep_dir");
  stdfs::create_directories(dir + "/in/sub");
  stdfs::create_directories(dir + "/in/.hidden");
  write_file(dir + "/in/b.jsonl", jsonl(make_docs(21, 50)));
  write_file(dir + "/in/a.txt", make_docs(22, 1)[0] + "\n\n" + make_docs(23, 1)[0] + "\n");
  write_file(dir + "/in/sub/c.jsonl.gz", gzip(jsonl(make_docs(24, 40))));
  write_file(dir + "/in/README.md", "not an input");
  write_file(dir + "/in/.hidden/x.jsonl", "not json at all\n");
  auto r = prepare_data(options({dir + "/in"}, dir + "/from_dir"));
  EXPECT_EQ(r.stats["sources"][0]["files"], 3);
  EXPECT_EQ(r.documents, 2 + 50 + 40);
  prepare_data(options({dir + "/in/a.txt", dir + "/in/b.jsonl", dir + "/in/sub/c.jsonl.gz"}, dir + "/from_files"));
  auto a = files_of(dir + "/from_dir"), b = files_of(dir + "/from_files");
  a.erase("prepare_data.json");
  b.erase("prepare_data.json");
  EXPECT_EQ(a, b);
  // an output inside an input folder is refused (a rerun would read it as input)
  EXPECT_THROW(prepare_data(options({dir + "/in"}, dir + "/in/sub/out")), openlm::ConfigError);
  EXPECT_FALSE(stdfs::exists(dir + "/in/sub/out"));
  // a folder without inputs is refused by name
  stdfs::create_directories(dir + "/empty");
  try {
    prepare_data(options({dir + "/empty"}, dir + "/o"));
    FAIL();
  } catch (const openlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/empty"), std::string::npos) << e.what();
  }
}

TEST(PrepareData, SourceWeightsUpsampleDeterministically) {
  EXPECT_EQ(parse_input_spec("a.jsonl:2").weight, 2.0);
  EXPECT_EQ(parse_input_spec("a.jsonl:2").path, "a.jsonl");
  EXPECT_EQ(parse_input_spec("a.jsonl").weight, 1.0);
  EXPECT_EQ(parse_input_spec("dir:x/a.jsonl").path, "dir:x/a.jsonl");
  EXPECT_EQ(parse_input_spec("a:b.jsonl:0.25").path, "a:b.jsonl");
  EXPECT_THROW(parse_input_spec("a.jsonl:0"), openlm::ConfigError);
  EXPECT_THROW(parse_input_spec("a.jsonl:-1"), openlm::ConfigError);

  auto dir = temp_dir("prep_weight");
  auto da = make_docs(31, 100), db = make_docs(32, 400);
  write_file(dir + "/a.jsonl", jsonl(da));
  write_file(dir + "/b.jsonl", jsonl(db));
  auto o = options({dir + "/a.jsonl:2", dir + "/b.jsonl:0.5"}, dir + "/w");
  o.no_pad = true;
  auto r = prepare_data(o);
  EXPECT_EQ(r.stats["sources"][0]["documents"], 100);
  EXPECT_EQ(r.stats["sources"][0]["documents_written"], 200);
  const int64_t kept = r.stats["sources"][1]["documents_written"].get<int64_t>();
  EXPECT_GT(kept, 150);
  EXPECT_LT(kept, 250);
  // token count: A twice plus exactly the sampled documents of B
  const int64_t ta = static_cast<int64_t>(stream_of(da).size());
  EXPECT_GT(r.tokens, 2 * ta);
  EXPECT_LT(r.tokens, 2 * ta + static_cast<int64_t>(stream_of(db).size()));
  // the sample depends on the seed only: same seed, same files; another seed, another sample
  o.output_dir = dir + "/w2";
  o.threads = 2;
  prepare_data(o);
  EXPECT_EQ(files_of(dir + "/w"), files_of(dir + "/w2"));
  o.seed = 4321;
  o.output_dir = dir + "/w3";
  auto r3 = prepare_data(o);
  EXPECT_NE(r3.tokens, r.tokens);
  // weight 1.5: every document once plus about half of them again
  o = options({dir + "/a.jsonl:1.5"}, dir + "/w4");
  auto r4 = prepare_data(o);
  EXPECT_GT(r4.stats["sources"][0]["documents_written"].get<int64_t>(), 120);
  EXPECT_LT(r4.stats["sources"][0]["documents_written"].get<int64_t>(), 180);
}

TEST(PrepareData, BadLinesNameFileAndLineOrAreCountedWhenSkipped) {
  auto dir = temp_dir("prep_bad");
  struct Case {
    std::string name, content, expect;
  };
  std::vector<Case> cases = {
      {"utf8.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"o\xff k\"}\n", "utf8.jsonl:2: invalid UTF-8"},
      {"notjson.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": \"ok\"}\n{text: 1}\n", "notjson.jsonl:4: not valid JSON"},
      {"nofield.jsonl", "{\"txt\": \"ok\"}\n", "nofield.jsonl:1: no field \"text\""},
      {"number.jsonl", "{\"text\": \"a\"}\n{\"text\": 3}\n", "number.jsonl:2: field \"text\" is a number"},
      {"empty.jsonl", "{\"text\": \"a\"}\n{\"text\": \"\"}\n", "empty.jsonl:2: empty document"},
      {"array.jsonl", "[\"text\"]\n", "array.jsonl:1: expected a JSON object"},
      {"utf8.txt", "fine\ntext\n\nmore\nbad \xc3(\n", "utf8.txt:5: invalid UTF-8"},
  };
  for (auto& c : cases) {
    write_file(dir + "/" + c.name, c.content);
    try {
      prepare_data(options({dir + "/" + c.name}, dir + "/out_" + c.name, 4));
      ADD_FAILURE() << c.name << " was accepted";
    } catch (const openlm::DataError& e) {
      EXPECT_NE(std::string(e.what()).find(dir + "/" + c.expect), std::string::npos) << e.what();
    }
    EXPECT_FALSE(stdfs::exists(dir + "/out_" + c.name + "/manifest.jsonl"));
  }
  // --skip-bad-lines: every case skipped and counted, in the stats file and on stdout
  auto cmd = [&](const std::string& out_dir) {
    std::string c = cli_bin() + " prepare-data --skip-bad-lines --tokenizer " + kNeox + " --output " + out_dir +
                    " --format native --seq-len 4 --seed 1 --input";
    for (auto& k : cases) c += " " + dir + "/" + k.name;
    return c;
  };
  std::string out;
  ASSERT_EQ(run("(" + cmd(dir + "/skip") + " 2>/dev/null)", &out), 0) << out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  auto printed = nlohmann::json::parse(out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1));
  auto stats = nlohmann::json::parse(read_file(dir + "/skip/prepare_data.json"));
  EXPECT_EQ(printed, stats);
  EXPECT_EQ(stats["bad_lines"]["invalid_utf8"], 2);
  EXPECT_EQ(stats["bad_lines"]["not_json"], 1);
  EXPECT_EQ(stats["bad_lines"]["missing_field"], 2);
  EXPECT_EQ(stats["bad_lines"]["empty_document"], 1);
  EXPECT_EQ(stats["bad_lines"]["not_object"], 1);
  EXPECT_EQ(stats["bad_lines_total"], 7);
  EXPECT_EQ(stats["blank_lines"], 1);
  EXPECT_EQ(stats["documents"], 6);  // ok, ok, ok, a, a, "fine\ntext" ("more" shares the bad line's document)
  // the skipped lines are named on stderr
  ASSERT_EQ(run("(" + cmd(dir + "/skip2") + " 2>&1 >/dev/null)", &out), 0) << out;
  EXPECT_NE(out.find("utf8.txt:5"), std::string::npos) << out;
}

TEST(PrepareData, TokenizerProblemsNameTheFile) {
  auto dir = temp_dir("prep_tok");
  write_file(dir + "/a.jsonl", jsonl(make_docs(1, 5)));
  write_file(dir + "/broken.json", "{\"version\": \"1.0\",\n \"model\": ");
  std::string out;
  for (std::string tok : {dir + "/missing.json", dir + "/broken.json"}) {
    EXPECT_EQ(run(cli_bin() + " prepare-data --input " + dir + "/a.jsonl --tokenizer " + tok + " --output " + dir +
                      "/o --format native --seq-len 8 --seed 1",
                  &out),
              1);
    EXPECT_NE(out.find(tok), std::string::npos) << out;
  }
  EXPECT_NE(out.find("line 2"), std::string::npos) << out;  // where the JSON breaks
}

TEST(PrepareData, RerunAfterInterruptionRestartsCleanly) {
  auto dir = temp_dir("prep_rerun");
  write_file(dir + "/a.jsonl", jsonl(make_docs(41, 200)));
  auto o = options({dir + "/a.jsonl"}, dir + "/clean");
  prepare_data(o);
  const auto clean = files_of(dir + "/clean");
  // what an interrupted run leaves: a partial folder, a shard moved in without its manifest, and an
  // earlier complete output with more shards than this run writes
  o.output_dir = dir + "/used";
  o.shard_sequences = 7;
  prepare_data(o);
  stdfs::create_directories(dir + "/used/.partial-999/tmp");
  write_file(dir + "/used/.partial-999/shard_00000000.olmtok", "half");
  stdfs::remove(dir + "/used/manifest.jsonl");
  o.shard_sequences = 40;
  prepare_data(o);
  EXPECT_EQ(files_of(dir + "/used"), clean);
  // a directory with somebody else's files is refused and left alone
  write_file(dir + "/used/notes.txt", "mine");
  EXPECT_THROW(prepare_data(o), openlm::ConfigError);
  EXPECT_EQ(read_file(dir + "/used/notes.txt"), "mine");
  EXPECT_TRUE(stdfs::exists(dir + "/used/manifest.jsonl"));
}

TEST(DocReader, JsonlLineRulesAndTextDocuments) {
  std::string text, why;
  EXPECT_EQ(parse_jsonl_line(R"({"a": {"text": 1}, "text": "x"})", "text", text, why), BadLine::None);
  EXPECT_EQ(text, "x");
  EXPECT_EQ(parse_jsonl_line(R"({"text": "x", "text": null})", "text", text, why), BadLine::MissingField);
  EXPECT_EQ(parse_jsonl_line(R"({"text": ["x"]})", "text", text, why), BadLine::MissingField);
  EXPECT_NE(why.find("an array"), std::string::npos) << why;
  EXPECT_EQ(parse_jsonl_line(R"({"body": "\u00e9\n"})", "body", text, why), BadLine::None);
  EXPECT_EQ(text, "\xc3\xa9\n");
  EXPECT_EQ(parse_jsonl_line(R"({"text": "x"} trailing)", "text", text, why), BadLine::NotJson);
  EXPECT_EQ(parse_jsonl_line(R"("text")", "text", text, why), BadLine::NotObject);

  DocReader rd(memory_stream("\r\n  \nfirst\r\nsecond\n\n\nthird"), "mem", DocFormat::Text, "text");
  DocRecord r;
  ASSERT_TRUE(rd.next(r));
  EXPECT_EQ(r.text, "first\nsecond");
  EXPECT_EQ(r.line, 3);
  ASSERT_TRUE(rd.next(r));
  EXPECT_EQ(r.text, "third");
  EXPECT_EQ(r.line, 7);
  EXPECT_FALSE(rd.next(r));
  EXPECT_EQ(input_kind("x/a.jsonl.zst").format, DocFormat::Jsonl);
  EXPECT_EQ(input_kind("x/a.jsonl.zst").compression, Compression::Zstd);
  EXPECT_EQ(input_kind("a.txt.gz").format, DocFormat::Text);
  EXPECT_TRUE(is_input_file_name("part-0001.jsonl.zstd"));
  EXPECT_FALSE(is_input_file_name("README.md"));
  EXPECT_FALSE(is_input_file_name(".a.jsonl"));
}
