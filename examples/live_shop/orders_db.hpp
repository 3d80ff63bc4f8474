// examples/live_shop/orders_db.hpp — the two questions the live shop's demo and tests ask
// PostgreSQL directly (libpq): one number from a query, and which orders are fulfilled.
#pragma once

#include <libpq-fe.h>

#include <cstdlib>
#include <set>
#include <string>

#include "postgres_process.hpp"  // postgres_cluster::conninfo

namespace live_shop {

/// The single value `sql` returns on `where` as a number (-1 on any error).
inline long sql_number(const address& where, const std::string& sql) {
  PGconn* c = PQconnectdb(postgres_cluster::conninfo(where).c_str());
  long out = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      out = std::strtol(PQgetvalue(r, 0, 0), nullptr, 10);
    }
    PQclear(r);
  }
  PQfinish(c);
  return out;
}

/// Ids of the orders fulfilled (paid, fulfilled_at set) on the primary; empty on error.
inline std::set<long> fulfilled_orders(const address& primary) {
  std::set<long> out;
  PGconn* c = PQconnectdb(postgres_cluster::conninfo(primary).c_str());
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r =
        PQexec(c, "SELECT id FROM orders WHERE fulfilled_at IS NOT NULL AND paid");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r); ++i) {
        out.insert(std::strtol(PQgetvalue(r, i, 0), nullptr, 10));
      }
    }
    PQclear(r);
  }
  PQfinish(c);
  return out;
}

}  // namespace live_shop
