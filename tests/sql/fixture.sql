-- Tables and rows for tests/sql_maps.rs, loaded into SQLite, MariaDB and PostgreSQL alike
-- (plain SQL that all three accept). The queries in the tests say ORDER BY where several
-- rows answer, so the joined values come in a known order.

CREATE TABLE alias (address VARCHAR(255) NOT NULL, goto VARCHAR(255), active INTEGER NOT NULL);
INSERT INTO alias (address, goto, active) VALUES
    ('joe@example.com', 'joe@mailhost.example.com', 1),
    ('list@example.com', 'ann@example.org', 1),
    ('list@example.com', 'bob@example.net', 1),
    ('list@example.com', 'carol@example.com', 1),
    ('old@example.com', 'gone@example.com', 0),
    ('nullgoto@example.com', NULL, 1),
    ('emptygoto@example.com', '', 1),
    ('Case@Example.com', 'upper@example.com', 1),
    ('@example.org', 'catchall@example.org', 1),
    ('postmaster', 'root@example.com', 1),
    ('x'' OR ''1''=''1', 'the row whose key is the quote attack itself', 1);

CREATE TABLE mailbox (localpart VARCHAR(64) NOT NULL, domain VARCHAR(255) NOT NULL, maildir VARCHAR(255) NOT NULL);
INSERT INTO mailbox (localpart, domain, maildir) VALUES
    ('joe', 'example.com', 'example.com/joe/'),
    ('joe', 'example.net', 'example.net/joe/');

CREATE TABLE tld_policy (tld VARCHAR(63) NOT NULL, second VARCHAR(63) NOT NULL, action VARCHAR(255) NOT NULL);
INSERT INTO tld_policy (tld, second, action) VALUES
    ('com', 'example', 'OK example.com and its subdomains'),
    ('org', 'example', 'REJECT');

CREATE TABLE forwardings (source VARCHAR(255) NOT NULL, destination VARCHAR(255) NOT NULL, active CHAR(1) NOT NULL);
INSERT INTO forwardings (source, destination, active) VALUES
    ('info@example.com', 'joe@example.com', 'y'),
    ('info@example.com', 'ann@example.org', 'n');

CREATE TABLE quota (address VARCHAR(255) NOT NULL, bytes INTEGER NOT NULL);
INSERT INTO quota (address, bytes) VALUES ('joe@example.com', 1048576);

CREATE TABLE secret (name VARCHAR(255) NOT NULL, value VARCHAR(255) NOT NULL);
INSERT INTO secret (name, value) VALUES ('root', 'hunter2');
