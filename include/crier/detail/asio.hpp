// Asio, included the same way everywhere: a standard header first, so that Asio's
// aligned-allocation detection (it reads libstdc++'s _GLIBCXX_HAVE_ALIGNED_ALLOC) agrees in
// every translation unit. Otherwise aligned_new/aligned_delete differ between TUs (an ODR
// violation AddressSanitizer reports as alloc-dealloc-mismatch).
#pragma once

#include <cstddef>

#include <asio.hpp>
