// What an application sees: server::add_transport() refuses a type that is not a
// crier::transport, and the diagnostic names the missing member.
#include <crier/server.hpp>

#include "archetypes.hpp"

void register_model(crier::server& s) { s.add_transport(compile_fail::transport_model{}); }
