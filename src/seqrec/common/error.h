// The exception hierarchy of seqrec: user-reachable failures carry what, where and a hint.
#pragma once

#include <stdexcept>
#include <string>

namespace seqrec {

/// Base of every error seqrec throws for a user-reachable failure.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad configuration value or key; the message starts with the YAML path.
class ConfigError : public Error {
 public:
  ConfigError(const std::string& path, const std::string& what)
      : Error(path.empty() ? what : path + ": " + what) {}
};

/// A malformed or inconsistent input file; the message names file[:line].
class DataError : public Error {
 public:
  using Error::Error;
};

/// A checkpoint that cannot be read or does not fit the model.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

/// A bad request (CLI recommend, or later the server).
class RequestError : public Error {
 public:
  using Error::Error;
};

}  // namespace seqrec
