"""The HTTP fallback's HTTP API in the deployed stack (PROTOCOL.md v1.1 "HTTP fallback"): one
`POST /v1/<action>` route per action the wiring serves over HTTP, each behind the JWT authorizer on
the user pool and integrated with the function that serves the action; throttled, logged, no CORS."""

from __future__ import annotations

import json

from chat_backend import wiring
from tests.infra.helpers import logical_id, of_type, references, routes_by_key, stage_of


def test_the_http_api_has_a_post_route_per_served_action_and_nothing_else(resources):
    # Given the actions the wiring serves over HTTP
    served = wiring.http_routes()
    # When the stack is synthesized
    routes = routes_by_key(resources, "HTTP")
    # Then the HTTP API has exactly `POST /v1/<action>` for each of them
    assert set(routes) == {f"POST /v1/{action}" for action in served}
    # And the live-connection routes and API Gateway's `$` routes are not among them
    assert not {"heartbeat", "typing", "presence", "$connect", "$default"} & set(served)
    assert {"send", "sync", "createChat", "receipt", "sendToDevice", "mediaUpload"} <= set(served)


def test_every_http_route_is_behind_the_jwt_authorizer_on_the_user_pool(stack, resources):
    # Given the stack's user pool and app client
    # When the stack is synthesized
    routes = routes_by_key(resources, "HTTP")
    # Then every route asks for JWT authorization by the one authorizer
    assert {props["AuthorizationType"] for _, props in routes.values()} == {"JWT"}
    (authorizer_id,) = {props["AuthorizerId"]["Ref"] for _, props in routes.values()}
    authorizer = resources[authorizer_id]["Properties"]
    # And that authorizer reads the bearer token and trusts the pool's issuer, for the app client
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
    jwt = authorizer["JwtConfiguration"]
    assert logical_id(stack, stack.users.client) in set(references(jwt["Audience"]))
    assert logical_id(stack, stack.users.pool) in set(references(jwt["Issuer"]))
    assert "cognito-idp" in json.dumps(jwt["Issuer"])


def test_every_http_route_invokes_the_function_the_wiring_says_serves_it(stack, resources):
    # Given the function serving each action
    served = wiring.http_routes()
    # When the stack is synthesized
    routes = routes_by_key(resources, "HTTP")
    permissions = of_type(resources, "AWS::Lambda::Permission").values()
    for action, spec in served.items():
        _, route = routes[f"POST /v1/{action}"]
        integration = resources[next(references(route["Target"]))]["Properties"]
        fn_id = logical_id(stack, stack.functions.by_name[spec.name])
        # Then its integration is a payload format 2.0 Lambda proxy to that function
        assert (integration["IntegrationType"], integration["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
        assert fn_id in set(references(integration["IntegrationUri"])), action
        # And API Gateway may invoke that function for that route
        assert any(
            fn_id in set(references(p["FunctionName"])) and f"/v1/{action}" in json.dumps(p["SourceArn"])
            for p in permissions
        ), action


def test_the_http_stage_is_throttled_and_writes_json_access_logs(resources, template):
    # Given the HTTP API's stage
    # When the stack is synthesized
    stage = stage_of(resources, "HTTP")
    # Then it is the auto-deployed $default stage with default route throttling
    assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(stage["DefaultRouteSettings"])
    # And access logs go to a log group of the stack, one JSON line per request with its status
    (log_group_id,) = references(stage["AccessLogSettings"]["DestinationArn"])
    assert resources[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group_id]["Properties"]["RetentionInDays"]
    log_format = json.loads(stage["AccessLogSettings"]["Format"])
    assert {"requestId", "routeKey", "status", "authorizerError", "integrationError"} <= set(log_format)
    # And there is no CORS (the SDK is no browser page), and the URL is an output
    (api,) = (p for p in of_type(resources, "AWS::ApiGatewayV2::Api").values() if p["ProtocolType"] == "HTTP")
    assert "CorsConfiguration" not in api
    assert "HttpUrl" in template.to_json()["Outputs"]
