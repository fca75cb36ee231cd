#pragma once

#include <cstdint>
#include <string>

namespace hb {

/// An amount of money in fen (1 fen = 0.01 yuan). Money is never a double:
/// every amount in the system is an integer number of fen.
class money {
public:
  constexpr money() = default;
  constexpr explicit money(int64_t fen) : fen_(fen) {}

  constexpr int64_t fen() const { return fen_; }

  friend constexpr money operator+(money a, money b) { return money{a.fen_ + b.fen_}; }
  friend constexpr money operator-(money a, money b) { return money{a.fen_ - b.fen_}; }
  money& operator+=(money b) { fen_ += b.fen_; return *this; }
  money& operator-=(money b) { fen_ -= b.fen_; return *this; }
  friend constexpr bool operator==(money a, money b) { return a.fen_ == b.fen_; }
  friend constexpr bool operator!=(money a, money b) { return a.fen_ != b.fen_; }
  friend constexpr bool operator<(money a, money b) { return a.fen_ < b.fen_; }
  friend constexpr bool operator<=(money a, money b) { return a.fen_ <= b.fen_; }
  friend constexpr bool operator>(money a, money b) { return a.fen_ > b.fen_; }
  friend constexpr bool operator>=(money a, money b) { return a.fen_ >= b.fen_; }

private:
  int64_t fen_ = 0;
};

/// Renders fen as yuan with two decimals, e.g. 1234 -> "12.34".
std::string to_yuan_string(int64_t fen);

} // namespace hb
