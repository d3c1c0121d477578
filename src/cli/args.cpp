#include "cli/args.h"

#include <cstdio>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "fathom/error.h"

namespace fathom::cli {

static std::vector<std::string> split_names(const std::string& names) {
  std::vector<std::string> out;
  std::stringstream ss(names);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

static std::string key_of(const std::vector<std::string>& names) {
  // The long name without dashes is the key ("--model" -> "model"); else the short one.
  for (const auto& n : names)
    if (n.rfind("--", 0) == 0) return n.substr(2);
  return names.front().substr(1);
}

Args& Args::option(const std::string& names, const std::string& help, const std::string& def) {
  Opt o;
  o.names = split_names(names);
  o.key = key_of(o.names);
  o.help = help;
  o.def = def;
  opts_.push_back(o);
  return *this;
}

Args& Args::flag(const std::string& names, const std::string& help) {
  Opt o;
  o.names = split_names(names);
  o.key = key_of(o.names);
  o.help = help;
  o.is_flag = true;
  opts_.push_back(o);
  return *this;
}

const Args::Opt* Args::lookup(const std::string& arg) const {
  for (const auto& o : opts_)
    for (const auto& n : o.names)
      if (n == arg) return &o;
  return nullptr;
}

bool Args::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::printf("%s", help().c_str());
      return false;
    }
    if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit((unsigned char)a[1]) || a[1] == '.'))) {
      std::string name = a, value;
      bool inline_value = false;
      auto eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      const Opt* o = lookup(name);
      FATHOM_CHECK(o != nullptr, "unknown option '", name, "' (see --help)");
      if (o->is_flag) {
        FATHOM_CHECK(!inline_value, "option '", name, "' takes no value");
        values_[o->key] = "1";
      } else {
        if (!inline_value) {
          FATHOM_CHECK(i + 1 < args.size(), "option '", name, "' needs a value");
          value = args[++i];
        }
        values_[o->key] = value;
      }
    } else {
      positional_.push_back(a);
    }
  }
  return true;
}

bool Args::has(const std::string& name) const { return values_.count(name) != 0; }

std::string Args::str(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  for (const auto& o : opts_)
    if (o.key == name) return o.def;
  fail("internal: option '", name, "' was never declared");
}

long long Args::integer(const std::string& name) const {
  std::string v = str(name);
  char* end = nullptr;
  long long r = std::strtoll(v.c_str(), &end, 10);
  FATHOM_CHECK(!v.empty() && end && *end == '\0', "option --", name, " expects an integer, got '", v, "'");
  return r;
}

double Args::real(const std::string& name) const {
  std::string v = str(name);
  char* end = nullptr;
  double r = std::strtod(v.c_str(), &end);
  FATHOM_CHECK(!v.empty() && end && *end == '\0', "option --", name, " expects a number, got '", v, "'");
  return r;
}

std::vector<long long> Args::int_list(const std::string& name) const {
  std::vector<long long> out;
  std::stringstream ss(str(name));
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    long long r = std::strtoll(item.c_str(), &end, 10);
    FATHOM_CHECK(end && *end == '\0', "option --", name, " expects comma-separated integers, got '", item, "'");
    out.push_back(r);
  }
  return out;
}

std::string Args::help() const {
  std::ostringstream os;
  os << usage_ << "\n\noptions:\n";
  for (const auto& o : opts_) {
    std::string names;
    for (size_t i = 0; i < o.names.size(); ++i) names += (i ? ", " : "") + o.names[i];
    if (!o.is_flag) names += " V";
    os << "  " << names;
    for (size_t pad = names.size(); pad < 24; ++pad) os << ' ';
    os << " " << o.help;
    if (!o.def.empty()) os << " (default " << o.def << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace fathom::cli
