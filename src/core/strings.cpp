#include <cstdarg>
#include <cstdio>
#include <string>

#include "fathom/error.h"

namespace fathom {

std::string str_printf(const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  va_list copy;
  va_copy(copy, ap);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string out(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::vsnprintf(&out[0], size_t(n) + 1, format, ap);
  va_end(ap);
  return out;
}

}  // namespace fathom
