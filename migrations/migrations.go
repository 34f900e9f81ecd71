// Package migrations embeds the SQL migrations of every service schema, one
// folder per schema (auth/, docs/). Files are goose SQL migrations named
// NNNNN_description.sql; they are applied at service start.
package migrations

import "embed"

// FS holds every schema's migrations.
//
//go:embed auth/*.sql docs/*.sql
var FS embed.FS
