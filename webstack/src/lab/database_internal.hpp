// Private to the database commands: what database.cpp (promote, rejoin) and rebuild.cpp
// share, each node asked as MariaDB's root over its socket.
#pragma once

#include <chrono>
#include <string>

#include "tools/mariadb.hpp"

namespace webstack::lab::detail {

tools::SqlResult sql(const std::string& state_dir, const std::string& host,
                     const std::string& statement,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30),
                     bool named = false);

std::string sql_checked(const std::string& state_dir, const std::string& host,
                        const std::string& statement,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30),
                        bool named = false);

// SQL holding a secret (the replication password): on stdin, never on a command line.
void sql_secret(const std::string& state_dir, const std::string& host,
                const std::string& statement);

}  // namespace webstack::lab::detail
