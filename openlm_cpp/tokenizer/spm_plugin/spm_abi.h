#pragma once
/// C interface of the SentencePiece plugin (libopenlm_spm.so).
///
/// Why a plugin: Debian's libsentencepiece embeds and exports its own protobuf-lite 3.14, while
/// LibTorch pulls in libprotobuf 3.21. Linked into one executable, the two copies interpose on each
/// other and the process crashes at start-up (or aborts on a version check). The plugin is loaded
/// with dlmopen(LM_ID_NEWLM) into a link-map namespace of its own, so SentencePiece binds to its
/// own protobuf (and its own libstdc++ instance) and LibTorch to the system one. Only plain C
/// types cross this interface; memory is released on the side that allocated it.
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// All functions return 0 on success; on failure they write a message into err (errlen bytes).
void* olm_spm_load(const char* path, char* err, size_t errlen);
void olm_spm_free(void* h);
int olm_spm_info(void* h, int* vocab_size, int* eos_id, int* bos_id, int* unk_id);
/// *ids is malloc'd; release with olm_spm_release.
int olm_spm_encode(void* h, const char* text, size_t len, int** ids, size_t* n, char* err, size_t errlen);
/// *text is malloc'd; release with olm_spm_release.
int olm_spm_decode(void* h, const int* ids, size_t n, char** text, size_t* len, char* err, size_t errlen);
void olm_spm_release(void* p);
/// Id of a piece; -1 when the model does not have it.
int olm_spm_piece_to_id(void* h, const char* piece, size_t len);
/// Piece of an id into buf (NUL-terminated, truncated to buflen); returns 1 when the id is a
/// control or unknown symbol, 0 otherwise, -1 for an id out of range.
int olm_spm_id_info(void* h, int id, char* buf, size_t buflen);
int olm_spm_train(const char* args, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif
