// A test-only hook that kills the process at a named point, to test crash safety.
#pragma once

namespace seqrec {

/// The environment variable that arms crash points: "NAME" or "NAME@N" (the N-th time NAME is
/// reached, 1-based). Unset in normal use; then crash_point costs one getenv per call site.
constexpr const char* kCrashPointEnv = "SEQREC_TEST_CRASH_AT";

/// When SEQREC_TEST_CRASH_AT names `name` (and this is the N-th hit), prints
/// "crash point NAME reached" to stderr and kills the process with SIGKILL: nothing is flushed,
/// closed or unwound, as with `kill -9` or a power cut between two writes. Otherwise does nothing.
void crash_point(const char* name);

}  // namespace seqrec
