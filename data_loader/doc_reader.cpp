#include "data_loader/doc_reader.h"

#include "data_loader/data_tools.h"

#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace openlm::data {
namespace {

constexpr size_t kChunk = size_t(1) << 20;  // read granularity: bounded memory per open input

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::string strip_compression(const std::string& name, Compression* c) {
  for (auto [suf, kind] : {std::pair<const char*, Compression>{".gz", Compression::Gzip},
                          {".zst", Compression::Zstd}, {".zstd", Compression::Zstd}})
    if (ends_with(name, suf)) {
      if (c) *c = kind;
      return name.substr(0, name.size() - std::strlen(suf));
    }
  if (c) *c = Compression::None;
  return name;
}

class FileStream final : public ByteStream {
 public:
  FileStream(const std::string& path, std::atomic<uint64_t>* counter) : path_(path), counter_(counter) {
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) throw_errno("cannot open input", path);
  }
  ~FileStream() override { std::fclose(f_); }
  size_t read(char* buf, size_t n) override {
    size_t got = std::fread(buf, 1, n, f_);
    if (got == 0 && std::ferror(f_)) throw_errno("cannot read input", path_);
    if (counter_) counter_->fetch_add(got, std::memory_order_relaxed);
    return got;
  }

 private:
  std::string path_;
  std::atomic<uint64_t>* counter_;
  std::FILE* f_ = nullptr;
};

class MemoryStream final : public ByteStream {
 public:
  explicit MemoryStream(std::string d) : d_(std::move(d)) {}
  size_t read(char* buf, size_t n) override {
    size_t k = std::min(n, d_.size() - pos_);
    std::memcpy(buf, d_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string d_;
  size_t pos_ = 0;
};

/// gzip through zlib's streaming inflate (libdeflate, used for shard members, has no streaming
/// API, and a .jsonl.gz input may be far larger than memory).
class GzipStream final : public ByteStream {
 public:
  GzipStream(std::unique_ptr<ByteStream> raw, std::string label) : raw_(std::move(raw)), label_(std::move(label)), in_(kChunk) {
    std::memset(&zs_, 0, sizeof zs_);
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) throw DataError(label_ + ": cannot initialise zlib");
  }
  ~GzipStream() override { inflateEnd(&zs_); }
  size_t read(char* buf, size_t n) override {
    while (!done_) {
      if (zs_.avail_in == 0 && !raw_eof_) {
        size_t got = raw_->read(in_.data(), in_.size());
        if (got == 0) raw_eof_ = true;
        any_input_ = any_input_ || got > 0;
        zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
        zs_.avail_in = static_cast<uInt>(got);
      }
      if (zs_.avail_in == 0 && raw_eof_) {
        if (!any_input_) throw DataError(label_ + ": empty file, not gzip data");
        if (in_member_) throw DataError(label_ + ": truncated gzip data (the stream ends inside a member)");
        done_ = true;
        break;
      }
      zs_.next_out = reinterpret_cast<Bytef*>(buf);
      zs_.avail_out = static_cast<uInt>(n);
      in_member_ = true;
      int rc = inflate(&zs_, Z_NO_FLUSH);
      size_t produced = n - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        in_member_ = false;  // a following member (concatenated gzip) starts afresh
        if (inflateReset(&zs_) != Z_OK) throw DataError(label_ + ": zlib reset failed");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw DataError(label_ + ": corrupt gzip data (" + (zs_.msg ? zs_.msg : "zlib error " + std::to_string(rc)) + ")");
      }
      if (produced > 0) return produced;
    }
    return 0;
  }

 private:
  std::unique_ptr<ByteStream> raw_;
  std::string label_;
  std::vector<char> in_;
  z_stream zs_;
  bool raw_eof_ = false, done_ = false, in_member_ = false, any_input_ = false;
};

class ZstdStream final : public ByteStream {
 public:
  ZstdStream(std::unique_ptr<ByteStream> raw, std::string label)
      : raw_(std::move(raw)), label_(std::move(label)), in_(ZSTD_DStreamInSize()) {
    ctx_ = ZSTD_createDCtx();
    if (!ctx_) throw DataError(label_ + ": cannot create a zstd context");
  }
  ~ZstdStream() override { ZSTD_freeDCtx(ctx_); }
  size_t read(char* buf, size_t n) override {
    while (true) {
      if (ib_.pos == ib_.size && !raw_eof_) {
        size_t got = raw_->read(in_.data(), in_.size());
        if (got == 0) raw_eof_ = true;
        any_input_ = any_input_ || got > 0;
        ib_ = {in_.data(), got, 0};
      }
      if (ib_.pos == ib_.size && raw_eof_ && !pending_) {
        if (!any_input_) throw DataError(label_ + ": empty file, not zstd data");
        return 0;
      }
      ZSTD_outBuffer ob{buf, n, 0};
      size_t rc = ZSTD_decompressStream(ctx_, &ob, &ib_);
      if (ZSTD_isError(rc)) throw DataError(label_ + ": corrupt zstd data (" + ZSTD_getErrorName(rc) + ")");
      // rc == 0: a frame is complete and flushed; otherwise more input or output is due.
      pending_ = rc != 0;
      if (ob.pos > 0) return ob.pos;
      if (ib_.pos == ib_.size && raw_eof_ && pending_)
        throw DataError(label_ + ": truncated zstd data (the stream ends inside a frame)");
    }
  }

 private:
  std::unique_ptr<ByteStream> raw_;
  std::string label_;
  std::vector<char> in_;
  ZSTD_inBuffer ib_{nullptr, 0, 0};
  ZSTD_DCtx* ctx_ = nullptr;
  bool raw_eof_ = false, pending_ = false, any_input_ = false;
};

/// SAX handler that keeps only the top-level member `field` (no DOM: records carry large metadata).
class FieldPicker final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit FieldPicker(const std::string& field) : field_(field) {}
  BadLine bad = BadLine::None;
  std::string why, text, found_type;
  bool found = false;

  bool null() override { return value("null"); }
  bool boolean(bool) override { return value("a boolean"); }
  bool number_integer(number_integer_t) override { return value("a number"); }
  bool number_unsigned(number_unsigned_t) override { return value("a number"); }
  bool number_float(number_float_t, const string_t&) override { return value("a number"); }
  bool string(string_t& s) override {
    if (depth_ == 0) return root("a string");
    if (want_) {
      text = std::move(s);
      found = true;
      found_type.clear();
      want_ = false;
    }
    return true;
  }
  bool binary(binary_t&) override { return value("binary"); }
  bool start_object(std::size_t) override {
    if (depth_ == 0 && !root_seen_) root_seen_ = true;
    else if (!open("an object")) return false;
    ++depth_;
    return true;
  }
  bool key(string_t& k) override {
    want_ = depth_ == 1 && k == field_;
    return true;
  }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return root("an array");
    open("an array");
    ++depth_;
    return true;
  }
  bool end_array() override { return --depth_, true; }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) override {
    bad = BadLine::NotJson;
    std::string msg = ex.what();
    // drop nlohmann's "[json.exception.parse_error.101] " prefix: the position is given separately
    if (auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
    why = "not valid JSON (byte " + std::to_string(pos) + "): " + msg;
    return false;
  }

 private:
  bool root(const char* what) {
    bad = BadLine::NotObject;
    why = std::string("expected a JSON object, found ") + what;
    return false;
  }
  bool value(const char* what) {
    if (depth_ == 0) return root(what);
    if (want_) {
      found = false;
      found_type = what;
      want_ = false;
    }
    return true;
  }
  bool open(const char* what) { return value(what); }

  const std::string& field_;
  int depth_ = 0;
  bool root_seen_ = false, want_ = false;
};

}  // namespace

InputKind input_kind(const std::string& path) {
  InputKind k;
  std::string base = strip_compression(path, &k.compression);
  k.format = ends_with(base, ".jsonl") || ends_with(base, ".json") || ends_with(base, ".ndjson") ? DocFormat::Jsonl
                                                                                                  : DocFormat::Text;
  return k;
}

bool is_input_file_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  std::string base = strip_compression(name, nullptr);
  for (const char* ext : {".txt", ".text", ".jsonl", ".json", ".ndjson"})
    if (ends_with(base, ext)) return true;
  return false;
}

std::unique_ptr<ByteStream> open_file_stream(const std::string& path, std::atomic<uint64_t>* bytes_read) {
  return std::make_unique<FileStream>(path, bytes_read);
}

std::unique_ptr<ByteStream> memory_stream(std::string data) { return std::make_unique<MemoryStream>(std::move(data)); }

std::unique_ptr<ByteStream> decompress_stream(std::unique_ptr<ByteStream> raw, Compression c, const std::string& label) {
  if (c == Compression::Gzip) return std::make_unique<GzipStream>(std::move(raw), label);
  if (c == Compression::Zstd) return std::make_unique<ZstdStream>(std::move(raw), label);
  return raw;
}

const char* bad_line_name(BadLine b) {
  switch (b) {
    case BadLine::None: return "none";
    case BadLine::InvalidUtf8: return "invalid_utf8";
    case BadLine::NotJson: return "not_json";
    case BadLine::NotObject: return "not_object";
    case BadLine::MissingField: return "missing_field";
    case BadLine::EmptyDocument: return "empty_document";
  }
  return "?";
}

BadLine parse_jsonl_line(std::string_view line, const std::string& field, std::string& text, std::string& why) {
  FieldPicker p(field);
  nlohmann::json::sax_parse(line.begin(), line.end(), &p, nlohmann::json::input_format_t::json, true);
  why.clear();
  if (p.bad != BadLine::None) {
    why = p.why;
    return p.bad;
  }
  if (!p.found) {
    why = p.found_type.empty() ? "no field \"" + field + "\" (--text-field names the document field)"
                               : "field \"" + field + "\" is " + p.found_type + ", expected a string";
    return BadLine::MissingField;
  }
  if (p.text.empty()) {
    why = "empty document (field \"" + field + "\" is \"\")";
    return BadLine::EmptyDocument;
  }
  text = std::move(p.text);
  return BadLine::None;
}

DocReader::DocReader(std::unique_ptr<ByteStream> in, std::string label, DocFormat format, std::string text_field)
    : in_(std::move(in)), label_(std::move(label)), field_(std::move(text_field)), format_(format) {}

bool DocReader::next_line(std::string& line) {
  while (true) {
    const char* nl = static_cast<const char*>(std::memchr(buf_.data() + pos_, '\n', buf_.size() - pos_));
    if (nl || (eof_ && pos_ < buf_.size())) {
      size_t end = nl ? static_cast<size_t>(nl - buf_.data()) : buf_.size();
      line.assign(buf_, pos_, end - pos_);
      pos_ = nl ? end + 1 : end;
      ++line_no_;
      return true;
    }
    if (eof_) return false;
    if (buf_.size() - pos_ > kMaxLineBytes)
      throw DataError(label_ + ":" + std::to_string(line_no_ + 1) + ": line longer than " +
                      std::to_string(kMaxLineBytes) + " bytes");
    buf_.erase(0, pos_);  // keep only the unfinished line, then append the next chunk
    pos_ = 0;
    size_t old = buf_.size();
    buf_.resize(old + kChunk);
    size_t got = 0;
    try {
      got = in_->read(buf_.data() + old, kChunk);
    } catch (const DataError& e) {
      throw DataError(std::string(e.what()) + " after line " + std::to_string(line_no_));
    }
    buf_.resize(old + got);
    if (got == 0) eof_ = true;
  }
}

bool DocReader::next(DocRecord& out) {
  out.text.clear();
  out.why.clear();
  out.bad = BadLine::None;
  if (format_ == DocFormat::Jsonl) {
    while (next_line(line_)) {
      if (line_.find_first_not_of(" \t\r\f\v") == std::string::npos) {
        ++blank_lines_;
        continue;
      }
      out.line = line_no_;
      size_t ok = unicode::valid_utf8_prefix(line_);
      if (ok != line_.size()) {
        out.bad = BadLine::InvalidUtf8;
        out.why = "invalid UTF-8 at byte " + std::to_string(ok) + " of the line";
        return true;
      }
      out.bad = parse_jsonl_line(line_, field_, out.text, out.why);
      return true;
    }
    return false;
  }
  bool in_doc = false;
  while (next_line(line_)) {
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.find_first_not_of(" \t\r\f\v") == std::string::npos) {
      if (in_doc) return true;
      continue;
    }
    if (!in_doc) {
      in_doc = true;
      out.line = line_no_;
    }
    if (out.bad != BadLine::None) continue;  // the rest of a refused document
    size_t ok = unicode::valid_utf8_prefix(line_);
    if (ok != line_.size()) {
      out.bad = BadLine::InvalidUtf8;
      out.line = line_no_;
      out.why = "invalid UTF-8 at byte " + std::to_string(ok) + " of the line (the document is refused)";
      out.text.clear();
      continue;
    }
    if (!out.text.empty()) out.text += '\n';
    out.text += line_;
  }
  return in_doc;
}

std::vector<std::string> split_documents(const std::string& text) {
  std::vector<std::string> docs;
  std::string cur;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl;
    std::string_view line(text.data() + pos, end - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t\r\f\v") == std::string_view::npos) {
      if (!cur.empty()) docs.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    if (!cur.empty()) cur += '\n';
    cur += line;
  }
  if (!cur.empty()) docs.push_back(std::move(cur));
  return docs;
}

}  // namespace openlm::data
