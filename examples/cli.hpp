// What the example programs' command lines share: exact number parsing and the overflow
// policy names.
#pragma once

#include <crier/core/options.hpp>

#include <charconv>
#include <string_view>

namespace crier_examples {

// All of `s` as a T (integers and floating point), nothing left over.
template <class T>
bool number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// "disconnect", "drop_oldest" or "conflate".
inline bool parse_policy(std::string_view v, crier::overflow_policy& p) {
  if (v == "disconnect") p = crier::overflow_policy::disconnect;
  else if (v == "drop_oldest") p = crier::overflow_policy::drop_oldest;
  else if (v == "conflate") p = crier::overflow_policy::conflate;
  else return false;
  return true;
}

}  // namespace crier_examples
