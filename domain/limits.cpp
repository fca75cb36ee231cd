#include "domain/limits.hpp"

namespace hb {

namespace {

failure fail(errc code, std::string msg) {
  return failure{code, std::move(msg)};
}

} // namespace

bool valid_utf8_text(const std::string& text) {
  size_t i = 0;
  auto n = text.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == 0)
      return false;
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3
                                : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n)
      return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2)
        return false;
    i += len;
  }
  return true;
}

failure validate_text_id(const std::string& text, const char* what,
                         size_t size_max) {
  std::string name{what};
  if (text.empty())
    return fail(errc::invalid_argument, name + " must not be empty");
  if (text.size() > size_max)
    return fail(errc::invalid_argument, name + " longer than "
                                          + std::to_string(size_max)
                                          + " bytes");
  if (!valid_utf8_text(text))
    return fail(errc::invalid_argument,
                name + " must be valid UTF-8 without NUL bytes");
  return failure{errc::none, {}};
}

failure validate(const create_request& req, const envelope_limits& lim) {
  if (req.sender.empty())
    return fail(errc::invalid_argument, "sender must not be empty");
  if (req.group.empty())
    return fail(errc::invalid_argument, "group must not be empty");
  if (req.idempotency_key.empty())
    return fail(errc::invalid_argument, "idempotency key must not be empty");
  for (auto* s : {&req.sender, &req.group, &req.greeting, &req.idempotency_key})
    if (s->size() > lim.text_size_max)
      return fail(errc::invalid_argument,
                  "text field longer than " + std::to_string(lim.text_size_max)
                    + " bytes");
  for (auto* s : {&req.sender, &req.group, &req.greeting, &req.idempotency_key})
    if (!valid_utf8_text(*s))
      return fail(errc::invalid_argument,
                  "text fields must be valid UTF-8 without NUL bytes");
  if (req.kind != envelope_kind::random && req.kind != envelope_kind::equal)
    return fail(errc::invalid_argument, "kind must be random or equal");
  if (req.count < 1)
    return fail(errc::invalid_argument, "count must be at least 1");
  if (req.count > lim.count_max)
    return fail(errc::limit_exceeded,
                "count " + std::to_string(req.count) + " exceeds the limit of "
                  + std::to_string(lim.count_max));
  if (req.total_fen < 1)
    return fail(errc::invalid_argument, "total_fen must be positive");
  // Every share gets at least share_min_fen and at most share_max_fen; the
  // products cannot overflow because count <= count_max is small.
  if (req.total_fen < lim.share_min_fen * req.count)
    return fail(errc::limit_exceeded,
                "total " + std::to_string(req.total_fen) + " fen is below "
                  + std::to_string(lim.share_min_fen) + " fen per share");
  if (req.total_fen > lim.share_max_fen * req.count)
    return fail(errc::limit_exceeded,
                "total " + std::to_string(req.total_fen) + " fen exceeds "
                  + std::to_string(lim.share_max_fen) + " fen per share");
  return failure{errc::none, {}};
}

} // namespace hb
