#include "openlm_cpp/checkpoint/pt_pickle.h"

#include <cstring>
#include <unordered_map>

#include "openlm_cpp/core/error.h"

namespace openlm::checkpoint::pickle {
namespace {

using K = Value::Kind;

class Machine {
 public:
  Machine(const uint8_t* d, size_t n, const std::string& where, Document& doc)
      : d_(d), n_(n), where_(where), doc_(doc) {}

  ValuePtr run() {
    for (;;) {
      op_at_ = pos_;
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                  // PROTO
        case 0x95: bytes(8); break;                // FRAME (length hint)
        case '.': return stop();                   // STOP
        case '(': marks_.push_back(stack_.size()); break;
        case '0': pop(); break;                    // POP
        case '1': pop_mark(); break;               // POP_MARK
        case '2': push(top()); break;              // DUP
        case 'N': push(make(K::None)); break;
        case 0x88:
        case 0x89: {
          ValuePtr v = make(K::Bool);
          v->b = op == 0x88;
          push(v);
          break;
        }
        case 'J': push(make_int(static_cast<int32_t>(le(4)))); break;  // BININT
        case 'K': push(make_int(static_cast<int64_t>(le(1)))); break;  // BININT1
        case 'M': push(make_int(static_cast<int64_t>(le(2)))); break;  // BININT2
        case 0x8a: push(long_int(byte())); break;                      // LONG1
        case 0x8b: push(long_int(le(4))); break;                       // LONG4
        case 'G': {                                                     // BINFLOAT (big-endian)
          uint64_t u = 0;
          for (uint8_t c : bytes(8)) u = (u << 8) | c;
          ValuePtr v = make(K::Float);
          std::memcpy(&v->f, &u, 8);
          push(v);
          break;
        }
        case 'X': push(make_str(K::String, text(le(4)))); break;  // BINUNICODE
        case 0x8c: push(make_str(K::String, text(le(1)))); break; // SHORT_BINUNICODE
        case 0x8d: push(make_str(K::String, text(le(8)))); break; // BINUNICODE8
        case 'T': push(make_str(K::String, text(le(4)))); break;  // BINSTRING
        case 'U': push(make_str(K::String, text(le(1)))); break;  // SHORT_BINSTRING
        case 'B': push(make_str(K::Bytes, text(le(4)))); break;   // BINBYTES
        case 'C': push(make_str(K::Bytes, text(le(1)))); break;   // SHORT_BINBYTES
        case 0x8e: push(make_str(K::Bytes, text(le(8)))); break;  // BINBYTES8
        case ']': push(make(K::List)); break;
        case '}': push(make(K::Dict)); break;
        case ')': push(make(K::Tuple)); break;
        case 0x8f: push(make(K::List)); break;  // EMPTY_SET (a list is enough here)
        case 'l':
        case 't':
        case 0x91: {  // LIST, TUPLE, FROZENSET from the items above the mark
          ValuePtr v = make(op == 't' ? K::Tuple : K::List);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'd': {  // DICT
          ValuePtr v = make(K::Dict);
          add_pairs(*v, pop_mark());
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          ValuePtr v = make(K::Tuple);
          v->items.resize(op - 0x84);
          for (size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
          push(v);
          break;
        }
        case 'a': {  // APPEND
          ValuePtr x = pop();
          container(K::List)->items.push_back(x);
          break;
        }
        case 'e':
        case 0x90: {  // APPENDS, ADDITEMS
          auto xs = pop_mark();
          auto& items = container(K::List)->items;
          items.insert(items.end(), xs.begin(), xs.end());
          break;
        }
        case 's': {  // SETITEM
          ValuePtr v = pop(), k = pop();
          container(K::Dict)->dict.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          auto xs = pop_mark();
          add_pairs(*container(K::Dict), xs);
          break;
        }
        case 'q': memo_[static_cast<uint32_t>(le(1))] = top(); break;  // BINPUT
        case 'r': memo_[static_cast<uint32_t>(le(4))] = top(); break;  // LONG_BINPUT
        case 0x94: memo_[static_cast<uint32_t>(memo_.size())] = top(); break;  // MEMOIZE
        case 'p': memo_[static_cast<uint32_t>(decimal(line()))] = top(); break;  // PUT
        case 'h': push(memo(le(1))); break;                                      // BINGET
        case 'j': push(memo(le(4))); break;                                      // LONG_BINGET
        case 'g': push(memo(decimal(line()))); break;                            // GET
        case 'c': {                                                              // GLOBAL
          std::string module = line();
          push(make_str(K::Global, module + "." + line()));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr name = pop(), module = pop();
          if (!name->is(K::String) || !module->is(K::String)) fail("STACK_GLOBAL needs two strings");
          push(make_str(K::Global, module->s + "." + name->s));
          break;
        }
        case 'R': {  // REDUCE
          ValuePtr args = pop(), fn = pop();
          push(call(fn, args));
          break;
        }
        case 0x81: {  // NEWOBJ
          pop();  // args: nothing is constructed
          ValuePtr cls = pop();
          push(make_str(K::Object, cls->is(K::Global) ? cls->s : std::string("?")));
          break;
        }
        case 0x92: {  // NEWOBJ_EX
          pop();
          pop();
          ValuePtr cls = pop();
          push(make_str(K::Object, cls->is(K::Global) ? cls->s : std::string("?")));
          break;
        }
        case 'b': pop(); top(); break;  // BUILD: object state is not applied (nothing runs)
        case 'Q': push(persistent(pop())); break;  // BINPERSID
        default: fail("unsupported pickle opcode 0x" + hex(op));
      }
    }
  }

 private:
  ValuePtr make(K k) {
    doc_.values.push_back(std::make_unique<Value>());
    doc_.values.back()->kind = k;
    return doc_.values.back().get();
  }
  ValuePtr make_int(int64_t i) {
    ValuePtr v = make(K::Int);
    v->i = i;
    return v;
  }
  ValuePtr make_str(K k, std::string s) {
    ValuePtr v = make(k);
    v->s = std::move(s);
    return v;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(where_ + ": byte " + std::to_string(op_at_) + ": " + what);
  }
  static std::string hex(uint8_t b) {
    const char* h = "0123456789abcdef";
    return {h[b >> 4], h[b & 15]};
  }
  uint8_t byte() {
    if (pos_ >= n_) fail("truncated pickle stream");
    return d_[pos_++];
  }
  std::vector<uint8_t> bytes(size_t k) {
    if (k > n_ - pos_) fail("truncated pickle stream");
    std::vector<uint8_t> v(d_ + pos_, d_ + pos_ + k);
    pos_ += k;
    return v;
  }
  uint64_t le(size_t k) {
    if (k > n_ - pos_) fail("truncated pickle stream");
    uint64_t u = 0;
    for (size_t j = 0; j < k; ++j) u |= static_cast<uint64_t>(d_[pos_ + j]) << (8 * j);
    pos_ += k;
    return u;
  }
  std::string text(uint64_t k) {
    if (k > n_ - pos_) fail("string of " + std::to_string(k) + " bytes runs past the end");
    std::string s(reinterpret_cast<const char*>(d_ + pos_), k);
    pos_ += k;
    return s;
  }
  std::string line() {
    const void* nl = pos_ < n_ ? std::memchr(d_ + pos_, '\n', n_ - pos_) : nullptr;
    if (!nl) fail("unterminated line");
    size_t end = static_cast<const uint8_t*>(nl) - d_;
    std::string s(reinterpret_cast<const char*>(d_ + pos_), end - pos_);
    pos_ = end + 1;
    return s;
  }
  uint64_t decimal(const std::string& s) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) fail("bad memo index");
    return std::stoull(s);
  }
  /// Little-endian two's complement of `k` bytes; wider than int64 becomes an opaque Object.
  ValuePtr long_int(uint64_t k) {
    if (k > 8) {
      text(k);  // bounds-checked skip
      return make_str(K::Object, "int");
    }
    if (k == 0) return make_int(0);
    uint64_t u = le(k);
    if (k < 8 && (u >> (8 * k - 1)) & 1) u |= ~uint64_t(0) << (8 * k);  // sign-extend
    return make_int(static_cast<int64_t>(u));
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr top() const {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("no mark on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  Value* container(K k) {
    Value* v = top();
    if (!v->is(k)) fail(std::string("expected a ") + Value::kind_name(k) + " on the stack, got a " + Value::kind_name(v->kind));
    return v;
  }
  void add_pairs(Value& d, const std::vector<ValuePtr>& xs) {
    if (xs.size() % 2) fail("odd number of items for a dict");
    for (size_t k = 0; k < xs.size(); k += 2) d.dict.emplace_back(xs[k], xs[k + 1]);
  }
  ValuePtr memo(uint64_t idx) {
    auto it = memo_.find(static_cast<uint32_t>(idx));
    if (idx > UINT32_MAX || it == memo_.end()) fail("memo index " + std::to_string(idx) + " was never stored");
    return it->second;
  }
  ValuePtr stop() {
    if (stack_.size() != 1 || !marks_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
    return stack_.back();
  }

  std::vector<int64_t> ints(const ValuePtr& t, const char* what) {
    if (!t->is(K::Tuple) && !t->is(K::List)) fail(std::string(what) + " must be a tuple");
    std::vector<int64_t> out;
    for (auto& x : t->items) {
      if (!x->is(K::Int)) fail(std::string(what) + " must hold integers");
      out.push_back(x->i);
    }
    return out;
  }

  /// ('storage', torch.FloatStorage, '0', 'cpu', numel) -> Storage.
  ValuePtr persistent(const ValuePtr& pid) {
    if (!pid->is(K::Tuple) || pid->items.size() < 5 || !pid->items[0]->is(K::String) || pid->items[0]->s != "storage")
      fail("unsupported persistent id (expected ('storage', type, key, location, numel))");
    const auto& it = pid->items;
    if (!it[1]->is(K::Global) || !it[2]->is(K::String) || !it[4]->is(K::Int)) fail("malformed storage persistent id");
    ValuePtr v = make(K::Storage);
    v->s = it[2]->s;
    v->tensor.storage_key = it[2]->s;
    const std::string& type = it[1]->s;
    v->tensor.storage_type = type.substr(type.rfind('.') + 1);
    v->tensor.storage_numel = it[4]->i;
    return v;
  }

  /// The only "calls" given meaning; everything else becomes an opaque Object.
  ValuePtr call(const ValuePtr& fn, const ValuePtr& args) {
    if (!args->is(K::Tuple)) fail("REDUCE arguments must be a tuple");
    const std::string name = fn->is(K::Global) ? fn->s : std::string();
    const auto& a = args->items;
    if (name == "collections.OrderedDict") {
      ValuePtr d = make(K::Dict);
      if (!a.empty() && a[0]->is(K::List))
        for (auto& kv : a[0]->items)
          if ((kv->is(K::Tuple) || kv->is(K::List)) && kv->items.size() == 2) d->dict.emplace_back(kv->items[0], kv->items[1]);
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4 || !a[0]->is(K::Storage) || !a[1]->is(K::Int)) fail(name + ": unexpected arguments");
      ValuePtr t = make(K::Tensor);
      t->tensor = a[0]->tensor;
      t->tensor.offset = a[1]->i;
      t->tensor.size = ints(a[2], "tensor size");
      t->tensor.stride = ints(a[3], "tensor stride");
      if (t->tensor.size.size() != t->tensor.stride.size()) fail(name + ": size and stride differ in length");
      return t;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || !a[0]->is(K::Tensor)) fail(name + ": expected a tensor");
      return a[0];
    }
    if (name == "torch._utils._rebuild_from_type_v2") {
      if (a.size() < 3) fail(name + ": unexpected arguments");
      return call(a[0], a[2]);
    }
    return make_str(K::Object, name.empty() ? std::string("?") : name);
  }

  const uint8_t* d_;
  size_t n_, pos_ = 0, op_at_ = 0;
  std::string where_;
  Document& doc_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, ValuePtr> memo_;
};

}  // namespace

const Value* Value::get(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : dict)
    if (k->kind == Kind::String && k->s == key) return v;
  return nullptr;
}

const char* Value::kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Object: return "object";
  }
  return "?";
}

std::unique_ptr<Document> parse(const uint8_t* data, size_t size, const std::string& where) {
  auto doc = std::make_unique<Document>();
  doc->root = Machine(data, size, where, *doc).run();
  return doc;
}

}  // namespace openlm::checkpoint::pickle
