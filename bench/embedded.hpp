#pragma once

// The baseline SQL and Lua scripts of bench/baseline/, compiled into
// hongbao-bench (by bench/CMakeLists.txt) so that the binary runs from
// anywhere; the files stay the place to read and change them.

namespace hb::bench::embedded {

extern const char* const postgres_sql;    // bench/baseline/postgres.sql
extern const char* const statements_sql;  // bench/baseline/statements.sql
extern const char* const create_lua;      // bench/baseline/create.lua
extern const char* const pay_lua;         // bench/baseline/pay.lua
extern const char* const grab_lua;        // bench/baseline/grab.lua
extern const char* const open_lua;        // bench/baseline/open.lua

} // namespace hb::bench::embedded
