// fathom's one error path: every user-facing failure is a fathom::Error carrying one clear sentence.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fathom {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_all(std::ostringstream& os, T&& first, Rest&&... rest) {
  os << std::forward<T>(first);
  append_all(os, std::forward<Rest>(rest)...);
}
}  // namespace detail

// Concatenates its arguments with operator<< into a string.
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  detail::append_all(os, std::forward<Args>(args)...);
  return os.str();
}

// printf-style formatting into a std::string (report tables, numbers with a precision).
std::string str_printf(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Throws fathom::Error with the concatenated message.
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace fathom

// FATHOM_CHECK(cond, msg...): throw fathom::Error(msg...) when cond is false.
#define FATHOM_CHECK(cond, ...)                 \
  do {                                          \
    if (!(cond)) ::fathom::fail(__VA_ARGS__);   \
  } while (0)
