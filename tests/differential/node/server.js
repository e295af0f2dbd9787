// The node upstream of tests/differential.rs: express 4 on node's own HTTP server.
//
// Routing is express's (path-to-regexp, case-insensitive, non-strict: its defaults), the
// admin host is matched by the vhost middleware, bodies are read by express.json() (which
// inflates gzip and deflate) and express.urlencoded(). Every handler that runs appends one
// line {"handler": NAME, "rid": X-Request-Id} to the log file named by argv[2] and answers
// with the same JSON. Prints the port it listens on (127.0.0.1, OS-chosen) as its first line.
'use strict';

const fs = require('fs');
const express = require('express');
const vhost = require('vhost');

const logPath = process.argv[2];

function ran(req, res, handler) {
  const line = JSON.stringify({ handler, rid: req.get('x-request-id') || '' });
  fs.appendFileSync(logPath, line + '\n');
  res.type('application/json').send(line);
}

const admin = express.Router();
admin.post('/v1/admin/users', (req, res) => {
  const op = req.body && req.body.op;
  ran(req, res, op === 'delete' ? 'admin_users_delete' : 'admin_users_other');
});

const app = express();
app.use(express.json());
app.use(express.urlencoded({ extended: false }));
app.use(vhost('admin.example.test', admin));

app.post('/v1/apps/:app/users/:user_id/deactivate', (req, res) => ran(req, res, 'deactivate'));
app.post('/v1/login', (req, res) => ran(req, res, 'login'));
app.post('/oauth/token', (req, res) => {
  const grant = req.body && req.body.grant_type;
  if (grant === 'password') return ran(req, res, 'token_password');
  if (grant === 'client_credentials') return ran(req, res, 'token_client_credentials');
  return ran(req, res, 'token_other');
});
app.all('*', (req, res) => ran(req, res, 'catch_all'));
// A body express could not parse (bad JSON, bad gzip): the app's error handler answers.
app.use((err, req, res, _next) => {
  res.status(err.status || 400).type('application/json').send(JSON.stringify({ upstream_error: 'bad_body' }));
});

const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});
