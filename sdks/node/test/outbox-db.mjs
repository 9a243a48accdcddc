// Fresh databases for the outbox tests, on the real PostgreSQL and MariaDB.
import { MYSQL, PG_URL } from "./harness.mjs";

export async function freshDatabase(dialect, name) {
  if (dialect === "postgres") {
    const { default: pg } = await import("pg");
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = PG_URL.replace(/\/[^/]*$/, `/${name}`);
    return {
      config: { dialect, url },
      pool: new pg.Pool({ connectionString: url, max: 4 }),
      async drop() {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    };
  }
  const mysql = await import("mysql2/promise");
  const admin = await mysql.createConnection(MYSQL);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const config = { ...MYSQL, database: name };
  return {
    config: { dialect, ...config },
    pool: mysql.createPool({ ...config, connectionLimit: 4 }),
    async drop() {
      const c = await mysql.createConnection(MYSQL);
      await c.query(`DROP DATABASE IF EXISTS ${name}`);
      await c.end();
    },
  };
}

export async function poolFor(config) {
  if (config.dialect === "postgres") {
    const { default: pg } = await import("pg");
    return new pg.Pool({ connectionString: config.url, max: 2 });
  }
  const mysql = await import("mysql2/promise");
  const { dialect: _, ...rest } = config;
  return mysql.createPool({ ...rest, connectionLimit: 2 });
}

/** Runs `work(tx)` in a transaction of its own; rolls back when it throws. */
export async function transaction(dialect, pool, work) {
  const conn = dialect === "postgres" ? await pool.connect() : await pool.getConnection();
  try {
    await conn.query(dialect === "postgres" ? "BEGIN" : "START TRANSACTION");
    try {
      await work(conn);
      await conn.query("COMMIT");
    } catch (err) {
      await conn.query("ROLLBACK");
      throw err;
    }
  } finally {
    conn.release();
  }
}
