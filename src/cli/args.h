// A small option parser shared by the subcommands: `-m FILE`, `--model FILE`, `--model=FILE`,
// boolean flags, positionals. Unknown options and bad values are fathom::Errors naming them.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace fathom::cli {

class Args {
 public:
  // `usage` is printed by --help; declare every option before parse().
  explicit Args(std::string usage) : usage_(std::move(usage)) {}
  // An option taking a value. `names` like "-m,--model".
  Args& option(const std::string& names, const std::string& help, const std::string& def = "");
  // A boolean flag.
  Args& flag(const std::string& names, const std::string& help);
  // Parses; returns false when --help was asked (help already printed to stdout).
  bool parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;  // option given (or flag set); name without dashes: "model"
  std::string str(const std::string& name) const;
  long long integer(const std::string& name) const;
  double real(const std::string& name) const;
  bool enabled(const std::string& name) const { return has(name); }
  // Comma-separated integers: "-p 512,4096".
  std::vector<long long> int_list(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  std::string help() const;

 private:
  struct Opt {
    std::vector<std::string> names;
    std::string key, help, def;
    bool is_flag = false;
  };
  const Opt* lookup(const std::string& arg) const;
  std::string usage_;
  std::vector<Opt> opts_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace fathom::cli
