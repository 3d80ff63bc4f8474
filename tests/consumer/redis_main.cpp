// Linked against outgrow::redis: proves the component brings hiredis (headers and
// library) to a consumer.
#include <outgrow/core/version.hpp>
#include <outgrow/redis/connection.hpp>

#include <hiredis/hiredis.h>

#include <fmt/format.h>

int main() {
  redisReader* reader = redisReaderCreate();
  if (reader == nullptr) return 1;
  redisReaderFree(reader);
  fmt::print("consumer_redis: outgrow {} with hiredis {}.{} ok\n", outgrow::version_string,
             HIREDIS_MAJOR, HIREDIS_MINOR);
  return 0;
}
