exports.handler = async (event, context) => {
  console.log('log from the handler');
  process.stdout.write('written to stdout\n');
  return {
    statusCode: 200,
    path: event.rawPath,
    context: {
      functionName: context.functionName,
      functionVersion: context.functionVersion,
      invokedFunctionArn: context.invokedFunctionArn,
      memoryLimitInMB: context.memoryLimitInMB,
      awsRequestId: context.awsRequestId,
      logGroupName: context.logGroupName,
      logStreamName: context.logStreamName,
      remainingTimeInMillis: context.getRemainingTimeInMillis(),
      callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
      legacyMethods: [typeof context.done, typeof context.succeed, typeof context.fail],
    },
    environment: {
      cwd: process.cwd(),
      taskRoot: process.env.LAMBDA_TASK_ROOT,
      handler: process.env._HANDLER,
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    },
  };
};
