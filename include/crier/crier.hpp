// crier: an embeddable pub/sub hub. One include: the hub, the server and every transport.
#pragma once

#include <crier/concepts.hpp>
#include <crier/core/hub.hpp>
#include <crier/error.hpp>
#include <crier/relay_client.hpp>
#include <crier/server.hpp>

#include <crier/detail/asio.hpp>
