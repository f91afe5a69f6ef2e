// crier::subscription_like must reject a type missing any one requirement (tests/compile_fail/CMakeLists.txt).
#include "archetypes.hpp"

static_assert(crier::subscription_like<compile_fail::subscription_model>);
