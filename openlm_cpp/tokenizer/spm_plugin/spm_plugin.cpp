// The only translation unit that includes SentencePiece (see spm_abi.h for why it is a plugin).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "openlm_cpp/tokenizer/spm_plugin/spm_abi.h"

namespace {
void put(char* err, size_t n, const std::string& msg) {
  if (!err || n == 0) return;
  std::strncpy(err, msg.c_str(), n - 1);
  err[n - 1] = '\0';
}
}  // namespace

extern "C" {

void* olm_spm_load(const char* path, char* err, size_t errlen) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  auto st = sp->Load(path);
  if (!st.ok()) {
    put(err, errlen, st.ToString());
    delete sp;
    return nullptr;
  }
  return sp;
}

void olm_spm_free(void* h) { delete static_cast<sentencepiece::SentencePieceProcessor*>(h); }

int olm_spm_info(void* h, int* vocab, int* eos, int* bos, int* unk) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(h);
  *vocab = sp->GetPieceSize();
  *eos = sp->eos_id();
  *bos = sp->bos_id();
  *unk = sp->unk_id();
  return 0;
}

int olm_spm_encode(void* h, const char* text, size_t len, int** ids, size_t* n, char* err, size_t errlen) {
  std::vector<int> out;
  auto st = static_cast<sentencepiece::SentencePieceProcessor*>(h)->Encode(std::string(text, len), &out);
  if (!st.ok()) {
    put(err, errlen, st.ToString());
    return 1;
  }
  *n = out.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
  if (!out.empty()) std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return 0;
}

int olm_spm_decode(void* h, const int* ids, size_t n, char** text, size_t* len, char* err, size_t errlen) {
  std::string out;
  auto st = static_cast<sentencepiece::SentencePieceProcessor*>(h)->Decode(std::vector<int>(ids, ids + n), &out);
  if (!st.ok()) {
    put(err, errlen, st.ToString());
    return 1;
  }
  *len = out.size();
  *text = static_cast<char*>(std::malloc(out.size() + 1));
  std::memcpy(*text, out.c_str(), out.size() + 1);
  return 0;
}

void olm_spm_release(void* p) { std::free(p); }

int olm_spm_piece_to_id(void* h, const char* piece, size_t len) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(h);
  std::string s(piece, len);
  int id = sp->PieceToId(s);
  if (id == sp->unk_id() && sp->IdToPiece(id) != s) return -1;
  return id;
}

int olm_spm_id_info(void* h, int id, char* buf, size_t buflen) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(h);
  if (id < 0 || id >= sp->GetPieceSize()) return -1;
  put(buf, buflen, sp->IdToPiece(id));
  return sp->IsControl(id) || sp->IsUnknown(id) ? 1 : 0;
}

int olm_spm_train(const char* args, char* err, size_t errlen) {
  auto st = sentencepiece::SentencePieceTrainer::Train(args);
  if (!st.ok()) {
    put(err, errlen, st.ToString());
    return 1;
  }
  return 0;
}

}  // extern "C"
