// Error checks that carry file and line and throw, never exit(): bad input becomes a
// Python ValueError (std::invalid_argument), an internal fault a RuntimeError.
#pragma once
#include <stdexcept>
#include <string>

#define SEGFAST_STR2(x) #x
#define SEGFAST_STR(x) SEGFAST_STR2(x)
#define SEGFAST_WHERE __FILE__ ":" SEGFAST_STR(__LINE__)

// Bad input from the caller (the binding layer validates before any kernel runs).
#define SEGFAST_REQUIRE(cond, msg)                                  \
    do {                                                            \
        if (!(cond)) throw std::invalid_argument(std::string(msg)); \
    } while (0)

// A broken internal invariant: a bug in segfast, reported with its location.
#define SEGFAST_ASSERT(cond)                                                                                 \
    do {                                                                                                     \
        if (!(cond)) throw std::runtime_error("segfast internal error: " #cond " failed at " SEGFAST_WHERE); \
    } while (0)
