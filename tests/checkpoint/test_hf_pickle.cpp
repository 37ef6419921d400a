// The restricted torch.save pickle reader (checkpoint/pt_pickle.h): real python3-torch streams
// (fuzz/corpus/pt_pickle, written by torch.save: OrderedDict state dicts, one-element lists,
// Parameters, strided views, protocol 4), hostile globals stay inert, malformed input is a DataError.
#include "openlm_cpp/checkpoint/pt_pickle.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "openlm_cpp/core/error.h"

namespace pk = openlm::checkpoint::pickle;
using K = pk::Value::Kind;

namespace {

std::string seed(const std::string& name) {
  std::ifstream f(std::string(OPENLM_SOURCE_DIR) + "/fuzz/corpus/pt_pickle/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << name;
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// A byte string literal with embedded NULs.
template <size_t N>
std::string B(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::unique_ptr<pk::Document> parse(const std::string& bytes) {
  return pk::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.pkl");
}

std::string error_of(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const openlm::DataError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(PtPickle, OpenLMEpochCheckpoint) {
  auto doc = parse(seed("openlm_epoch.pkl"));
  ASSERT_TRUE(doc->root->is(K::Dict));
  EXPECT_EQ(doc->root->get("epoch")->i, 3);
  EXPECT_EQ(doc->root->get("name")->s, "x");
  const pk::Value* sd = doc->root->get("state_dict");  // a collections.OrderedDict
  ASSERT_TRUE(sd && sd->is(K::Dict));
  ASSERT_EQ(sd->dict.size(), 3u);
  const pk::Value* emb = sd->get("module.tok_embeddings.weight");
  ASSERT_TRUE(emb && emb->is(K::Tensor));
  EXPECT_EQ(emb->tensor.storage_type, "FloatStorage");
  EXPECT_EQ(emb->tensor.size, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(emb->tensor.stride, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(emb->tensor.storage_numel, 12);
  EXPECT_EQ(sd->get("_orig_mod.norm.weight")->tensor.storage_type, "BFloat16Storage");
  // a one-element list (APPEND), which LibTorch 1.13's unpickler rejects
  const pk::Value* groups = doc->root->get("optimizer")->get("param_groups");
  ASSERT_TRUE(groups && groups->is(K::List));
  ASSERT_EQ(groups->items.size(), 1u);
  EXPECT_DOUBLE_EQ(groups->items[0]->get("lr")->f, 0.1);
  EXPECT_EQ(groups->items[0]->get("betas")->items.size(), 2u);
}

TEST(PtPickle, ViewsParametersAndScalars) {
  auto doc = parse(seed("views_params_misc.pkl"));
  const pk::Value* sd = doc->root->get("state_dict");
  const pk::Value* w = sd->get("w");  // Parameter of a column slice of a [2, 3] tensor
  ASSERT_TRUE(w && w->is(K::Tensor));
  EXPECT_EQ(w->tensor.size, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w->tensor.stride, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(w->tensor.offset, 1);
  const pk::Value* t = sd->get("t");  // every other element of an int64 arange
  EXPECT_EQ(t->tensor.storage_type, "LongStorage");
  EXPECT_EQ(t->tensor.stride, (std::vector<int64_t>{2}));
  EXPECT_EQ(sd->get("s")->tensor.size, std::vector<int64_t>{});
  const auto& misc = doc->root->get("misc")->items;
  ASSERT_EQ(misc.size(), 11u);
  EXPECT_TRUE(misc[0]->is(K::None));
  EXPECT_TRUE(misc[1]->b);
  EXPECT_FALSE(misc[2]->b);
  EXPECT_EQ(misc[3]->i, -1);
  EXPECT_EQ(misc[4]->i, int64_t(1) << 40);
  EXPECT_TRUE(misc[5]->is(K::Object));  // -2**70 does not fit: opaque, not an error
  EXPECT_DOUBLE_EQ(misc[6]->f, 3.25);
  EXPECT_EQ(misc[7]->s, "\xc3\xa9");
  EXPECT_TRUE(misc[8]->is(K::Object));  // protocol 2 bytes are _codecs.encode(...): never called
  EXPECT_EQ(misc[8]->s, "_codecs.encode");
}

TEST(PtPickle, Protocol4AndBareStateDict) {
  for (const char* name : {"protocol4.pkl", "bare_state_dict.pkl"}) {
    auto doc = parse(seed(name));
    const pk::Value* sd = doc->root->get("state_dict") ? doc->root->get("state_dict") : doc->root;
    ASSERT_EQ(sd->dict.size(), 3u) << name;
    EXPECT_TRUE(sd->get("layers.0.attention.pos_embed.inv_freq")->is(K::Tensor)) << name;
  }
}

TEST(PtPickle, GlobalsAreNeverCalled) {
  // {"x": os.system("echo pwned")} : the call becomes an inert Object.
  std::string p = B("\x80\x02}q\x00X\x01\x00\x00\x00" "x" "cos\nsystem\n" "X\x0a\x00\x00\x00" "echo pwned\x85R" "s.");
  auto doc = parse(p);
  const pk::Value* x = doc->root->get("x");
  ASSERT_TRUE(x && x->is(K::Object));
  EXPECT_EQ(x->s, "os.system");
  // a list that contains itself (memo cycle) parses and is freed with its document
  auto cyc = parse(B("\x80\x02]q\x00h\x00" "a."));
  EXPECT_EQ(cyc->root->items.at(0), cyc->root);
}

TEST(PtPickle, MalformedStreamsAreDataErrors) {
  EXPECT_NE(error_of(B("\x80\x02}X\x09\x00\x00\x00" "abc")).find("runs past the end"), std::string::npos);
  EXPECT_NE(error_of(std::string("\x80\x02}", 3)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02" "S'a'\n.").find("unsupported pickle opcode 0x53"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02h\x05.").find("memo index 5"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02.").find("STOP with 0"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02" "N" "s.").find("stack underflow"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02" "]NNs.").find("expected a dict"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02" "(NNN" "d.").find("odd number"), std::string::npos);
  EXPECT_NE(error_of(B("\x80\x02" "(X\x01\x00\x00\x00" "xK\x01tQ.")).find("persistent id"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02" "e.").find("no mark"), std::string::npos);
  EXPECT_NE(error_of("\x80\x02").find("test.pkl: byte 2"), std::string::npos);
}
