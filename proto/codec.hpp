#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "domain/errc.hpp"
#include "domain/requests.hpp"

namespace hb::codec {

/// Frames on the wire: a 4-byte big-endian payload length, then one Protobuf
/// message (proto/hongbao.proto): `Request` from client to node, `Response`
/// from node to client. See docs/protocol.md.
constexpr size_t frame_header_size = 4;

/// GetHistory page sizes: a limit of 0 means `history_limit_default`; any
/// other value outside 1..`history_limit_max` is errc::invalid_argument.
constexpr int32_t history_limit_default = 20;
constexpr int32_t history_limit_max = 100;

/// Writes the 4-byte big-endian length prefix for a payload of `size` bytes.
void put_frame_header(uint32_t size, char* out);

/// Reads a 4-byte big-endian length prefix.
uint32_t get_frame_header(const char* in);

/// Parses a Request payload (without the length prefix) into its plain form.
/// Bytes that are not a Request, or a Request without a body, are
/// errc::malformed; a body with a field out of range is
/// errc::invalid_argument (an unknown enum value, a history limit outside
/// 0..100, a negative reconcile since_ms, a segment outside 0..999). A
/// Request's timeout_ms is copied as is. A history limit of 0 comes out
/// as `history_limit_default`. The request id, when it could be read, is stored
/// in `request_id_out` so that the error reply can carry it.
outcome<client_request> decode_request(const char* data, size_t size,
                                       uint64_t& request_id_out);

/// Serialises a request as a complete frame (length prefix included).
std::string encode_request_frame(const client_request& req);

/// Parses a Response payload (without the length prefix).
outcome<client_response> decode_response(const char* data, size_t size);

/// Serialises a response as a complete frame (length prefix included).
std::string encode_response_frame(const client_response& resp);

} // namespace hb::codec
