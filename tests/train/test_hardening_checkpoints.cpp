// Issue 13 A.1-5 through the CLI, as a user runs `openlm`: no predictable temporary files in shared
// directories and no writes through planted symlinks; import-hf copies only regular files from inside
// the source directory without widening permissions; resume refuses checkpoint metadata naming files
// outside the checkpoint or out-of-range counters; all-corrupt checkpoints stop the run untouched;
// retention keeps the resumed-from checkpoint and moves a corrupt one aside.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/recipe.h"
#include "train_fixtures.h"

namespace stdfs = std::filesystem;

namespace {

using namespace openlm::testing;  // openlm_bin, sh, q, slurp, has, snapshot, temp_dir, ...

const std::string kBin = openlm_bin();

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (auto& e : stdfs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

/// A 4-step tiny run with checkpoints step_2 and step_4, trained once and copied for each test.
const std::string& base_run() {
  static const std::string run = [] {
    const std::string root = openlm::testing::temp_dir("hardening_base");
    const std::string manifest = openlm::testing::write_counting_shards(root + "/data", 64, 16, 64);
    openlm::TrainConfig c = openlm::testing::tiny_recipe(manifest, root + "/run", 4);
    c.checkpoint.every_steps = 2;
    c.checkpoint.keep_last = 5;
    std::ofstream(root + "/recipe.json") << openlm::to_json(c).dump(2);
    Result r = sh("OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(root + "/recipe.json") + " --run-dir " +
                  q(root + "/run"));
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_TRUE(stdfs::exists(root + "/run/checkpoints/step_2/metadata.json")) << r.out;
    EXPECT_TRUE(stdfs::exists(root + "/run/checkpoints/step_4/metadata.json")) << r.out;
    return root + "/run";
  }();
  return run;
}

std::string recipe() { return stdfs::path(base_run()).parent_path().string() + "/recipe.json"; }

/// A fresh copy of the base run.
std::string copy_run(const std::string& name) {
  const std::string dir = openlm::testing::temp_dir(name) + "/run";
  stdfs::copy(base_run(), dir, stdfs::copy_options::recursive);
  return dir;
}

/// `openlm train` resuming `run` (resume=latest), with extra arguments.
Result train(const std::string& run, const std::string& extra = "") {
  return sh("OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(recipe()) + " --run-dir " + q(run) +
                " --set resume=latest " + extra,
            60);
}

/// The model shard file of a checkpoint (model-shard00000-of-00001.safetensors or similar).
std::string model_file(const std::string& ckpt) {
  for (auto& e : stdfs::directory_iterator(ckpt))
    if (e.path().filename().string().rfind("model", 0) == 0) return e.path().string();
  ADD_FAILURE() << "no model file in " << ckpt;
  return "";
}

void flip_byte(const std::string& file) {
  std::string s = slurp(file);
  s[s.size() - 3] ^= 0x5a;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << s;
}

nlohmann::json read_json(const std::string& p) { return nlohmann::json::parse(slurp(p)); }
void write_json(const std::string& p, const nlohmann::json& j) { std::ofstream(p, std::ios::trunc) << j.dump(2); }

std::string make_victim(const std::string& dir) {
  const std::string v = dir + "/victim";
  std::ofstream(v) << "precious 0600 data\n";
  ::chmod(v.c_str(), 0600);
  return v;
}

}  // namespace

// A.1: generate/eval/export-hf write no temporary file into TMPDIR (or /tmp), and nothing writes
// through a symlink planted at the old predictable names: those of the config temp file (the child
// learns its own pid as $$ before exec) and atomic_file's `<dest>.tmp`.
TEST(Hardening, NoPredictableTempFilesAndNoWritesThroughSymlinks) {
  const std::string run = copy_run("tmpfiles");
  const std::string root = stdfs::path(run).parent_path().string();
  const std::string victim = make_victim(root);
  const std::string tmpdir = root + "/tmpdir";
  stdfs::create_directories(tmpdir);
  std::ofstream(root + "/tokens.txt") << "1 2 3 4 5 6 7 8\n9 10 11 12 13\n";
  auto openlm_in_tmp = [] {
    std::set<std::string> s;
    for (auto& n : entries("/tmp"))
      if (n.rfind("openlm_cfg_", 0) == 0 || n.rfind("openlm_hf_cfg_", 0) == 0) s.insert(n);
    return s;
  };
  const auto tmp_before = openlm_in_tmp();
  const std::string plant = "ln -s " + q(victim) + " \"$TMPDIR/openlm_cfg_$$.json.tmp\"; ln -s " + q(victim) +
                            " \"$TMPDIR/openlm_cfg_$$.json\"; ln -s " + q(victim) +
                            " \"$TMPDIR/openlm_hf_cfg_$$_0.json.tmp\"; ln -s " + q(victim) +
                            " \"$TMPDIR/openlm_hf_cfg_$$_0.json\"; ";
  const std::string ckpt = run + "/checkpoints/step_4";

  Result ev = sh("export TMPDIR=" + q(tmpdir) + "; " + plant + "exec " + q(kBin) + " eval " + q(ckpt) +
                 " --tokens " + q(root + "/tokens.txt"));
  EXPECT_EQ(ev.rc, 0) << ev.out;
  EXPECT_EQ(slurp(victim), "precious 0600 data\n");

  const std::string out = root + "/hf";
  stdfs::create_directories(out);
  for (const char* f : {"config.json.tmp", "model.safetensors.tmp", "generation_config.json.tmp"})
    stdfs::create_symlink(victim, out + "/" + f);
  Result ex = sh("export TMPDIR=" + q(tmpdir) + "; rm -f \"$TMPDIR\"/*; " + plant + "exec " + q(kBin) +
                 " export-hf " + q(ckpt) + " " + q(out) + " --format openlm");
  EXPECT_EQ(ex.rc, 0) << ex.out;
  EXPECT_EQ(slurp(victim), "precious 0600 data\n") << "written through a planted symlink";
  EXPECT_TRUE(stdfs::is_regular_file(stdfs::symlink_status(out + "/config.json")));
  EXPECT_TRUE(stdfs::is_regular_file(stdfs::symlink_status(out + "/model.safetensors")));

  // TMPDIR holds exactly what the script planted there: nothing was created, renamed or removed.
  std::set<std::string> planted;
  for (auto& n : entries(tmpdir)) {
    EXPECT_TRUE(stdfs::is_symlink(tmpdir + "/" + n)) << n << " was created in TMPDIR";
    planted.insert(n);
  }
  EXPECT_EQ(planted.size(), 4u);
  EXPECT_EQ(openlm_in_tmp(), tmp_before) << "a config temp file appeared in /tmp";

  // The atomic writes of a training run (config.json, checkpoint files, `latest`) ignore planted
  // `<dest>.tmp` symlinks too.
  for (const char* f : {"config.json.tmp", "checkpoints/latest.tmp", "metrics.jsonl.tmp", "model.safetensors.tmp"})
    stdfs::create_symlink(victim, run + "/" + f);
  // (--max-steps 6 extends the finished 4-step run: a schedule change, allowed explicitly; B.5)
  Result tr = train(run, "--max-steps 6 --set checkpoint.every_steps=1 --set schedule.allow_change=true");
  EXPECT_EQ(tr.rc, 0) << tr.out;
  EXPECT_EQ(slurp(victim), "precious 0600 data\n") << "a training run wrote through a planted symlink";
  EXPECT_EQ(slurp(run + "/checkpoints/latest"), "step_6\n");
}

// A.2: import-hf refuses a tokenizer file symlinked out of the source directory (naming it) and a
// FIFO (no hang), accepts a symlink that stays inside, and never widens a file's permissions.
TEST(Hardening, ImportHfCopiesOnlyRegularFilesInsideWithoutWideningModes) {
  const std::string run = copy_run("importhf");
  const std::string root = stdfs::path(run).parent_path().string();
  const std::string secret = make_victim(root);  // stands for /etc/shadow
  const std::string hf = root + "/hf";
  Result ex = sh(q(kBin) + " export-hf " + q(run) + " " + q(hf) + " --format openlm");
  ASSERT_EQ(ex.rc, 0) << ex.out;

  stdfs::create_symlink(secret, hf + "/special_tokens_map.json");
  Result bad = sh(q(kBin) + " import-hf " + q(hf) + " " + q(root + "/out1"));
  EXPECT_NE(bad.rc, 0) << bad.out;
  EXPECT_NE(bad.out.find("special_tokens_map.json"), std::string::npos) << bad.out;
  EXPECT_FALSE(stdfs::exists(root + "/out1/special_tokens_map.json"));
  stdfs::remove(hf + "/special_tokens_map.json");

  ASSERT_EQ(::mkfifo((hf + "/merges.txt").c_str(), 0644), 0);
  Result fifo = sh(q(kBin) + " import-hf " + q(hf) + " " + q(root + "/out2"), 30);
  EXPECT_NE(fifo.rc, 0) << fifo.out;
  EXPECT_NE(fifo.rc, 124) << "import-hf hung on a FIFO";
  EXPECT_NE(fifo.out.find("merges.txt"), std::string::npos) << fifo.out;
  stdfs::remove(hf + "/merges.txt");

  // A private regular file stays private; a symlink to a file inside the directory is fine.
  std::ofstream(hf + "/added_tokens.json") << "{}\n";
  ::chmod((hf + "/added_tokens.json").c_str(), 0600);
  std::ofstream(hf + "/real_vocab.json") << "{\"a\": 0}\n";
  ::chmod((hf + "/real_vocab.json").c_str(), 0640);
  stdfs::create_symlink("real_vocab.json", hf + "/vocab.json");
  Result ok = sh("umask 022; " + q(kBin) + " import-hf " + q(hf) + " " + q(root + "/out3"));
  ASSERT_EQ(ok.rc, 0) << ok.out;
  struct stat st {};
  ASSERT_EQ(::stat((root + "/out3/added_tokens.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "copy widened 0600";
  ASSERT_EQ(::lstat((root + "/out3/vocab.json").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(slurp(root + "/out3/vocab.json"), "{\"a\": 0}\n");
}

// A.3: metadata.json naming files outside the checkpoint ("/dev/zero" hung, "/etc/passwd" was
// hashed and its hash printed), a symlink inside it, or out-of-range steps/counters is refused by
// name; resume falls back to the intact step_2.
TEST(Hardening, ResumeRefusesDoctoredMetadata) {
  struct Case {
    std::string name, expect;
    std::function<void(const std::string& ckpt, nlohmann::json& meta)> doctor;
  };
  const std::vector<Case> cases = {
      {"dev_zero", "/dev/zero", [](auto&, auto& m) { m["files"]["/dev/zero"] = "0000000000000000"; }},
      {"etc_passwd", "/etc/passwd", [](auto&, auto& m) { m["files"]["/etc/passwd"] = "0000000000000000"; }},
      {"dotdot", "../step_2/metadata.json",
       [](auto&, auto& m) { m["files"]["../step_2/metadata.json"] = "0000000000000000"; }},
      {"symlink", "evil.safetensors",
       [](auto& ckpt, auto& m) {
         stdfs::create_symlink("/dev/zero", ckpt + "/evil.safetensors");
         m["files"]["evil.safetensors"] = "0000000000000000";
       }},
      {"step_huge", "'step'", [](auto&, auto& m) { m["step"] = int64_t(1) << 62; }},
      {"step_negative", "'step'", [](auto&, auto& m) { m["step"] = -5; }},
      {"tokens_negative", "'tokens_seen'", [](auto&, auto& m) { m["tokens_seen"] = -1; }},
      {"optimizer_steps_huge", "'optimizer_steps'", [](auto&, auto& m) { m["optimizer_steps"] = int64_t(1) << 62; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string run = copy_run("doctored_" + c.name);
    const std::string ckpt = run + "/checkpoints/step_4";
    nlohmann::json meta = read_json(ckpt + "/metadata.json");
    c.doctor(ckpt, meta);
    write_json(ckpt + "/metadata.json", meta);
    Result r = train(run, "--max-steps 4");
    EXPECT_NE(r.rc, 124) << "resume hung:\n" << r.out;
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("checksum mismatch in /"), std::string::npos) << "hashed a file outside:\n" << r.out;
    EXPECT_NE(r.out.find("step_2 at step 2"), std::string::npos) << r.out;  // "resumed from .../step_2 at step 2"
  }
}

// A.4: when every checkpoint fails verification, resume=latest stops with an error listing each one
// and how to start afresh, and leaves every byte under checkpoints/ as it was.
TEST(Hardening, AllCheckpointsCorruptStopsAndTouchesNothing) {
  const std::string run = copy_run("allcorrupt");
  flip_byte(model_file(run + "/checkpoints/step_2"));
  flip_byte(model_file(run + "/checkpoints/step_4"));
  const auto before = snapshot(run + "/checkpoints");
  Result r = train(run, "--max-steps 6 --set checkpoint.every_steps=1 --set checkpoint.keep_last=1");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("step_2: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step_4: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksum mismatch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--run-dir"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("starting from scratch"), std::string::npos) << r.out;
  EXPECT_TRUE(snapshot(run + "/checkpoints") == before) << "checkpoints changed:\n" << r.out;
}

// A.5: after a corrupt step_4 is skipped and step_2 resumed, retention (keep_last=1) keeps step_2
// (the checkpoint the run resumed from) and the corrupt step_4 is renamed aside, not kept in place
// of a good one and not deleted.
TEST(Hardening, RetentionKeepsResumedCheckpointAndSetsCorruptAside) {
  const std::string run = copy_run("retention");
  const std::string ck = run + "/checkpoints";
  flip_byte(model_file(ck + "/step_4"));
  const auto corrupt = snapshot(ck + "/step_4");
  Result r = train(run, "--max-steps 4 --stop-at-step 3 --set checkpoint.keep_last=1");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("step_2 at step 2"), std::string::npos) << r.out;
  EXPECT_TRUE(stdfs::exists(ck + "/step_3/metadata.json")) << r.out;
  EXPECT_TRUE(stdfs::exists(ck + "/step_2/metadata.json")) << "retention deleted the resumed-from checkpoint\n" << r.out;
  EXPECT_FALSE(stdfs::exists(ck + "/step_4")) << "the corrupt checkpoint was kept in place\n" << r.out;
  ASSERT_TRUE(stdfs::exists(ck + "/step_4.corrupt-1")) << r.out;
  EXPECT_TRUE(snapshot(ck + "/step_4.corrupt-1") == corrupt);
  EXPECT_EQ(slurp(ck + "/latest"), "step_3\n");

  // The next restart resumes from step_3; now step_2 may go, the set-aside copy stays.
  Result r2 = train(run, "--max-steps 4 --set checkpoint.keep_last=1");
  ASSERT_EQ(r2.rc, 0) << r2.out;
  EXPECT_NE(r2.out.find("step_3 at step 3"), std::string::npos) << r2.out;
  EXPECT_EQ(entries(ck), (std::set<std::string>{"latest", "step_3", "step_4", "step_4.corrupt-1"}));
}
