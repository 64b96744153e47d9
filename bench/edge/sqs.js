'use strict';
// SQS's JSON protocol over one keep-alive connection, without an SDK: the benchmark's queue
// administration, and its measure of the bare round trip of a SendMessage.
const http = require('node:http');

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
// The local stand-in checks no signature; it reads the region from the credential scope.
const AUTHORIZATION = 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0';

function call(endpoint, action, params) {
  const url = new URL(endpoint);
  const body = JSON.stringify(params);
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: '/',
        method: 'POST',
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': `AmazonSQS.${action}`,
          authorization: AUTHORIZATION,
          'content-length': Buffer.byteLength(body),
        },
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          if (response.statusCode !== 200) reject(new Error(`${action}: ${response.statusCode} ${text}`));
          else resolve(text ? JSON.parse(text) : {});
        });
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

// Empties a queue (moto, like SQS, allows one PurgeQueue a minute): keeps it small, since the
// local stand-in slows down with many messages queued.
async function drain(endpoint, queueUrl) {
  for (;;) {
    const { Messages: messages = [] } = await call(endpoint, 'ReceiveMessage', { QueueUrl: queueUrl, MaxNumberOfMessages: 10 });
    if (messages.length === 0) return;
    const entries = messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle }));
    await call(endpoint, 'DeleteMessageBatch', { QueueUrl: queueUrl, Entries: entries });
  }
}

module.exports = { call, drain, agent };
