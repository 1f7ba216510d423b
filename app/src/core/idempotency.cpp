#include "core/idempotency.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>

namespace webstack::idempotency {

namespace {

bool key_char(char c) {
  return c >= 0x20 && c <= 0x7E;
}

std::string length_error(std::size_t n) {
  if (n == 0) return "is empty";
  return fmt::format("is longer than {} characters", kMaxKeyLength);
}

}  // namespace

ParsedKey parse_header(std::string_view value) {
  const auto first = value.find_first_not_of(" \t");
  const auto last = value.find_last_not_of(" \t");
  if (first == std::string_view::npos) return {{}, "is empty"};
  value = value.substr(first, last - first + 1);
  if (value.size() < 2 || value.front() != '"') {
    return {{}, "must be a quoted string, for example \"8e03978e-40d5-43e8-bc93-6894a57f9324\""};
  }
  std::string key;
  std::size_t i = 1;
  for (; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '"') break;
    if (c == '\\') {
      if (i + 1 >= value.size() || (value[i + 1] != '"' && value[i + 1] != '\\')) {
        return {{}, "has a backslash not followed by \" or \\"};
      }
      key += value[++i];
      continue;
    }
    if (!key_char(c)) return {{}, "holds a character that is not visible ASCII"};
    key += c;
  }
  if (i >= value.size()) return {{}, "has no closing quote"};
  if (i + 1 != value.size()) {
    return {{}, "has something after the closing quote (one quoted string, no parameters)"};
  }
  if (key.empty() || key.size() > kMaxKeyLength) return {{}, length_error(key.size())};
  return {std::move(key), {}};
}

ParsedKey check_form_field(std::string_view value) {
  if (value.empty() || value.size() > kMaxKeyLength) return {{}, length_error(value.size())};
  for (char c : value) {
    if (!key_char(c)) return {{}, "holds a character that is not visible ASCII"};
  }
  return {std::string(value), {}};
}

std::string fingerprint(std::string_view method, std::string_view path,
                        std::string_view content_type, std::string_view body) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned length = 0;
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  // Each part with its length first, so that no two different requests hash the same
  // bytes ("a" + "bc" against "ab" + "c").
  for (std::string_view part : {method, path, content_type, body}) {
    const auto size = fmt::format("{}:", part.size());
    ok = ok && EVP_DigestUpdate(ctx.get(), size.data(), size.size()) == 1 &&
         EVP_DigestUpdate(ctx.get(), part.data(), part.size()) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) == 1;
  if (!ok) throw std::runtime_error("idempotency: SHA-256 failed");
  return {reinterpret_cast<const char*>(digest.data()), length};
}

std::string hex_literal(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(3 + bytes.size() * 2);
  out += "X'";
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0xF];
  }
  out += '\'';
  return out;
}

std::string new_key() {
  thread_local std::random_device device;
  std::string key;
  for (int i = 0; i < 4; ++i) key += fmt::format("{:08x}", static_cast<std::uint32_t>(device()));
  return key;
}

}  // namespace webstack::idempotency
