// ftctl's commands as its help shows them: each one's synopsis, what it
// does, its flags and examples; and the nearest name to a mistyped one.
// Pure data and text: main.cc parses the command line with them.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ftd::client {

struct Command {
  std::string name;
  std::string synopsis;  // after "ftctl "
  std::string summary;   // one line, for the command list
  std::string details;   // paragraphs for the command's own help
  std::vector<std::string> flags;
  std::vector<std::string> examples;
};

// Every command, in the order the help lists them.
const std::vector<Command>& Commands();
// nullptr for a name that is no command.
const Command* FindCommand(const std::string& name);
// Flags every command takes.
const std::vector<std::string>& GlobalFlags();

// The candidate nearest to `word` by edit distance, if near enough to be a
// likely typo (at most 2 edits, and fewer than half its letters); else "".
std::string Nearest(const std::string& word, const std::vector<std::string>& candidates);

// A flag's help line: "" when there is no such flag.
using FlagDescriber = std::function<std::string(const std::string& flag)>;

// `ftctl --help`: the commands, the global flags and the exit codes.
std::string GeneralHelp(const FlagDescriber& describe);
// `ftctl help CMD`: its synopsis, details, flags and examples.
std::string CommandHelp(const Command& command, const FlagDescriber& describe);

}  // namespace ftd::client
