-- deploy/docker/compose.yaml: one database per service, owned by the stack's user (run once, when
-- the PostgreSQL volume is first initialised)
CREATE DATABASE ingest OWNER mailroom;
CREATE DATABASE contacts OWNER mailroom;
CREATE DATABASE conversations OWNER mailroom;
CREATE DATABASE outbound OWNER mailroom;
CREATE DATABASE notifier OWNER mailroom;
