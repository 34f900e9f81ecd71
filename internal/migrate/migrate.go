// Package migrate applies one service schema's embedded SQL migrations with
// goose, under a PostgreSQL advisory lock so that several instances starting
// at once apply each migration exactly once. It owns nothing else: the SQL
// lives in the migrations package.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Up creates schema if needed and applies the migrations in dir of fsys
// (e.g. migrations.FS, "auth"). Goose's version table lives in the schema
// itself, so each service's history stays its own.
func Up(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, schema string) error {
	sub, err := fs.Sub(fsys, schema)
	if err != nil {
		return err
	}
	// goose works on database/sql; borrow a handle on the same pool config.
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	// CREATE SCHEMA IF NOT EXISTS is not safe against itself: two services
	// starting at once can both miss the schema and one then fails on the
	// catalogue's unique index. A transaction-scoped advisory lock makes
	// them take turns.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockID("gatehouse-schema:"+schema)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	return up(ctx, db, sub, schema)
}

func up(ctx context.Context, db *sql.DB, fsys fs.FS, schema string) error {
	// One lock id per schema: services migrating different schemas do not
	// wait on each other.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID("gatehouse-migrate:" + schema)))
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(schema+".goose_db_version"), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations %s: %w", schema, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	return nil
}

// Open connects to databaseURL, checks that the server answers, and
// applies schema's migrations: what every service does at start. Errors
// name DATABASE_URL, the variable an operator has to fix.
func Open(ctx context.Context, databaseURL string, fsys fs.FS, schema string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("DATABASE_URL: cannot reach the database: %w", err)
	}
	if err := Up(ctx, pool, fsys, schema); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// lockID maps a name to an advisory lock key.
func lockID(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64() >> 1)
}
