// crier::transport must reject a type missing any one requirement (tests/compile_fail/CMakeLists.txt).
#include "archetypes.hpp"

static_assert(crier::transport<compile_fail::transport_model>);
