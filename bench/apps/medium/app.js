// The Express app: lists the objects of an S3 bucket, grouped by the day they were last modified.
const express = require('express');
const { S3Client, ListObjectsV2Command } = require('@aws-sdk/client-s3');
const _ = require('lodash');
const moment = require('moment');

const s3 = new S3Client({});
const app = express();

app.get('/health', (req, res) => {
  res.json({ status: 'ok' });
});

app.get('/objects/:bucket', async (req, res) => {
  const output = await s3.send(new ListObjectsV2Command({ Bucket: req.params.bucket, MaxKeys: 100 }));
  const byDay = _.groupBy(output.Contents || [], (object) => moment(object.LastModified).format('YYYY-MM-DD'));
  res.json(_.mapValues(byDay, (objects) => objects.map((object) => object.Key)));
});

module.exports = app;
