// crier::broker must reject a type missing any one requirement (tests/compile_fail/CMakeLists.txt).
#include "archetypes.hpp"

static_assert(crier::broker<compile_fail::broker_model>);
