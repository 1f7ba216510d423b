#include "db/library.hpp"

#include <mysql.h>

#include <stdexcept>

namespace webstack::db {

void library_init() {
  if (mysql_library_init(0, nullptr, nullptr) != 0) {
    throw std::runtime_error("db: mysql_library_init failed");
  }
}

void library_end() {
  mysql_library_end();
}

void thread_init() {
  if (mysql_thread_init() != 0) {
    throw std::runtime_error("db: mysql_thread_init failed");
  }
}

void thread_end() {
  mysql_thread_end();
}

}  // namespace webstack::db
