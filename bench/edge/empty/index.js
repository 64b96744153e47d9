'use strict';
// The baseline every figure is measured against: a handler that only hands the request back.
exports.handler = async (event) => event.Records[0].cf.request;
