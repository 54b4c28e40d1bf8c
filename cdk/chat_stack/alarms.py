"""CloudWatch alarms on what needs a person: dead letters, function errors and throttles, a falling-behind
stream, and API Gateway failures. With an `alarmEmail`, every alarm notifies an SNS topic emailing it."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chat_backend import wiring
from chat_stack.nag import acknowledge

PERIOD = Duration.minutes(5)
# A stream record this old has waited a minute for fan-out: pushes are late (sync still has it).
STREAM_ITERATOR_AGE_MS = 60_000
# WebSocket API metrics (AWS/ApiGateway, by ApiId and Stage): failures on API Gateway's side or the
# integration's. ClientError (4xx: bad frames, refused tokens) is the callers' business: no alarm.
API_ERROR_METRICS = ("ExecutionError", "IntegrationError")


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dead_letter_queues: Mapping[str, sqs.IQueue],
        functions: Mapping[str, lambda_.IFunction],
        stage: apigw.WebSocketStage,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic: sns.Topic | None = None
        if alarm_email:
            self.topic = sns.Topic(self, "Topic", display_name="Chat backend alarms", enforce_ssl=True)
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
            acknowledge(
                self.topic,
                "AwsSolutions-SNS2",
                "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key, "
                "and alarm notifications carry no user data: a customer-managed key would buy nothing.",
            )
        for name, dlq in dead_letter_queues.items():
            self._alarm(
                f"{name}DeadLetters",
                dlq.metric_approximate_number_of_messages_visible(period=Duration.minutes(1)),
                f"Messages in the {name} dead-letter queue: they failed every retry; inspect and redrive",
            )
        for name, fn in functions.items():
            self._alarm(f"{name}Errors", fn.metric_errors(period=PERIOD), f"The {name} function failed")
            self._alarm(f"{name}Throttles", fn.metric_throttles(period=PERIOD), f"{name} was throttled")
            if isinstance(wiring.function(name).trigger, wiring.StreamTrigger):
                self._alarm(
                    f"{name}IteratorAge",
                    fn.metric("IteratorAge", statistic="Maximum", period=Duration.minutes(1)),
                    f"The {name} stream trigger is falling behind (oldest record over a minute old)",
                    threshold=STREAM_ITERATOR_AGE_MS,
                )
        for metric_name in API_ERROR_METRICS:
            metric = cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=metric_name,
                dimensions_map={"ApiId": stage.api.api_id, "Stage": stage.stage_name},
                statistic="Sum",
                period=PERIOD,
            )
            self._alarm(f"Api{metric_name}", metric, f"WebSocket API {metric_name} (server-side failures)")

    def _alarm(
        self, alarm_id: str, metric: cloudwatch.IMetric, description: str, threshold: float = 0
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,  # no traffic is not a failure
            alarm_description=description,
        )
        if self.topic is not None:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
