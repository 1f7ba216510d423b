// Process- and thread-wide setup of MariaDB Connector/C. mysql_library_init() is not
// thread-safe, so main() calls library_init() once before any I/O thread starts, and
// library_end() after they all joined. Every thread that uses a Cluster calls
// thread_init() before its io_context runs and thread_end() before it exits (or holds a
// ThreadScope for its lifetime).
#pragma once

namespace webstack::db {

void library_init();  // throws std::runtime_error
void library_end();
void thread_init();  // throws std::runtime_error
void thread_end();

class ThreadScope {
 public:
  ThreadScope() { thread_init(); }
  ~ThreadScope() { thread_end(); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
};

}  // namespace webstack::db
