#include "admin/format.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace hb::admin {

namespace {

using json = nlohmann::json;

json value_of(const std::string& text) {
  auto digits = text.size() - (text.rfind('-', 0) == 0 ? 1 : 0);
  if (digits > 0 && digits <= 15
      && std::all_of(text.begin() + (text.size() - digits), text.end(),
                     [](char c) { return c >= '0' && c <= '9'; }))
    return json(std::stoll(text));
  if (text == "true")
    return json(true);
  if (text == "false")
    return json(false);
  return json(text);
}

// Width of a cell in terminal columns: UTF-8 continuation bytes take none.
size_t columns_of(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xC0) == 0x80 ? 0 : 1;
  return n;
}

std::string padded(const std::string& s, size_t width) {
  auto n = columns_of(s);
  return s + std::string(width > n ? width - n : 0, ' ');
}

} // namespace

std::string table_text(const admin_table& table) {
  std::vector<size_t> widths(table.columns.size());
  for (size_t c = 0; c < table.columns.size(); ++c)
    widths[c] = columns_of(table.columns[c]);
  for (auto& row : table.rows)
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], columns_of(row[c]));
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out = " ";
    for (size_t c = 0; c < widths.size(); ++c) {
      auto cell = c < cells.size() ? cells[c] : "";
      out += (c == 0 ? " " : "  ")
             + (c + 1 < widths.size() ? padded(cell, widths[c]) : cell);
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    return out + "\n";
  };
  std::string out = line(table.columns);
  for (auto& row : table.rows)
    out += line(row);
  return out;
}

std::string reply_text(const admin_reply& reply) {
  std::string out;
  if (!reply.error.empty())
    out += "error (" + reply.error + "): " + reply.message + "\n";
  else if (!reply.message.empty())
    out += reply.message + "\n";
  size_t width = 0;
  for (auto& f : reply.fields)
    width = std::max(width, f.key.size());
  for (auto& f : reply.fields)
    out += "  " + padded(f.key + ":", width + 1) + " " + f.value + "\n";
  for (auto& t : reply.tables) {
    if (!out.empty())
      out += "\n";
    out += t.name + " (" + std::to_string(t.rows.size()) + "):\n";
    if (!t.rows.empty())
      out += table_text(t);
  }
  return out;
}

std::string reply_json(const admin_reply& reply) {
  json out;
  out["ok"] = reply.error.empty();
  out["node"] = reply.node;
  out["command"] = reply.command;
  if (!reply.error.empty())
    out["error"] = json{{"code", reply.error}, {"message", reply.message}};
  else if (!reply.message.empty())
    out["message"] = reply.message;
  auto fields = json::object();
  for (auto& f : reply.fields)
    fields[f.key] = value_of(f.value);
  out["fields"] = std::move(fields);
  auto tables = json::object();
  for (auto& t : reply.tables) {
    auto rows = json::array();
    for (auto& row : t.rows) {
      auto obj = json::object();
      for (size_t c = 0; c < t.columns.size(); ++c)
        obj[t.columns[c]] = value_of(c < row.size() ? row[c] : "");
      rows.push_back(std::move(obj));
    }
    tables[t.name] = std::move(rows);
  }
  out["tables"] = std::move(tables);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace hb::admin
