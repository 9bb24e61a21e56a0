#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%%
%% One TLS connection over Erlang/OTP ssl, driven by captures/record_erlang.py.
%%
%%   tlsnode.escript server PORT VERSION VERIFY CERTFILE KEYFILE CAFILE [no_ca_names]
%%   tlsnode.escript client PORT VERSION CAFILE SNI CERTFILE|- KEYFILE|-
%%
%% VERSION is tlsv1.2 or tlsv1.3 (the only version offered); VERIFY is none ({verify,
%% verify_none}), optional ({verify, verify_peer}, {fail_if_no_peer_cert, false}) or required
%% ({verify, verify_peer}, {fail_if_no_peer_cert, true}). Each event is one line on stdout:
%%   listening | peer_port N | local_port N | handshake ok VERSION | handshake_error TERM
%%   peer_cert CN|none | keylog LINE | recv TEXT | sent TEXT | recv_error TERM | send_error TERM
%%   info_error TERM | closed
%% The server answers the client's line with "pong\n", then waits for the client's close.
%% The key log comes from {keep_secrets, true} and ssl:connection_information(S, [keylog]).
-mode(compile).
%% "handshake ok" on the client means ssl:connect/3 returned: in TLS 1.3 that is before the
%% server has judged the client's certificate, so a refusal shows up as recv_error.

main(["server", Port, Version, Verify, Cert, Key, Ca | Extra]) ->
    start(),
    server(list_to_integer(Port), list_to_atom(Version), Verify, Cert, Key, Ca,
           [extra_opt(E) || E <- Extra]);
main(["client", Port, Version, Ca, Sni, Cert, Key]) ->
    start(),
    client(list_to_integer(Port), list_to_atom(Version), Ca, Sni, Cert, Key);
main(_) ->
    io:format(standard_error, "usage: see the header of this file~n", []),
    halt(2).

start() ->
    {ok, _} = application:ensure_all_started(ssl).

say(Format, Args) ->
    io:format(Format ++ "~n", Args).

verify_opts("none") -> [{verify, verify_none}];
verify_opts("optional") -> [{verify, verify_peer}, {fail_if_no_peer_cert, false}];
verify_opts("required") -> [{verify, verify_peer}, {fail_if_no_peer_cert, true}].

%% no_ca_names: {certificate_authorities, false}, the CertificateRequest names no CA
extra_opt("no_ca_names") -> {certificate_authorities, false}.

server(Port, Version, Verify, Cert, Key, Ca, Extra) ->
    {ok, Listen} = gen_tcp:listen(Port, [binary, {active, false}, {reuseaddr, true},
                                         {ip, {127, 0, 0, 1}}]),
    say("listening", []),
    {ok, Tcp} = gen_tcp:accept(Listen, 20000),
    {ok, {_, PeerPort}} = inet:peername(Tcp),
    say("peer_port ~b", [PeerPort]),
    Opts = [{versions, [Version]}, {certfile, Cert}, {keyfile, Key}, {cacertfile, Ca},
            {keep_secrets, true} | verify_opts(Verify) ++ Extra],
    case ssl:handshake(Tcp, Opts, 10000) of
        {ok, S} ->
            established(S),
            peer_cert(S),
            case recv(S) of
                {ok, _} ->
                    case ssl:send(S, <<"pong\n">>) of
                        ok -> say("sent pong", []), wait_close(S);
                        {error, SendError} -> say("send_error ~0p", [SendError])
                    end;
                _ ->
                    ok
            end,
            ssl:close(S);
        {error, Error} ->
            say("handshake_error ~0p", [Error])
    end,
    gen_tcp:close(Listen).

client(Port, Version, Ca, Sni, Cert, Key) ->
    {ok, Tcp} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 10000),
    {ok, {_, LocalPort}} = inet:sockname(Tcp),
    say("local_port ~b", [LocalPort]),
    Identity = case Cert of
                   "-" -> [];
                   _ -> [{certfile, Cert}, {keyfile, Key}]
               end,
    Opts = [{versions, [Version]}, {verify, verify_peer}, {cacertfile, Ca},
            {server_name_indication, Sni}, {keep_secrets, true} | Identity],
    case ssl:connect(Tcp, Opts, 10000) of
        {ok, S} ->
            established(S),
            case ssl:send(S, <<"ping\n">>) of
                ok -> say("sent ping", []);
                {error, SendError} -> say("send_error ~0p", [SendError])
            end,
            recv(S),
            ssl:close(S),
            say("closed", []);
        {error, Error} ->
            say("handshake_error ~0p", [Error])
    end.

established(S) ->
    case ssl:connection_information(S, [protocol, keylog]) of
        {ok, Info} ->
            say("handshake ok ~s", [proplists:get_value(protocol, Info)]),
            [say("keylog ~s", [Line]) || Line <- proplists:get_value(keylog, Info, [])];
        {error, Error} ->
            %% the connection is gone already (the server's alert came first)
            say("handshake ok unknown", []),
            say("info_error ~0p", [Error])
    end,
    ok.

peer_cert(S) ->
    case ssl:peercert(S) of
        {ok, Der} -> say("peer_cert ~s", [common_name(Der)]);
        {error, _} -> say("peer_cert none", [])
    end.

common_name(Der) ->
    Tbs = element(2, public_key:pkix_decode_cert(Der, otp)),
    {rdnSequence, Rdns} = element(7, Tbs),
    hd([value(V) || Set <- Rdns, {'AttributeTypeAndValue', {2, 5, 4, 3}, V} <- Set]).

value({_, V}) when is_list(V); is_binary(V) -> V;
value(V) -> V.

recv(S) ->
    case ssl:recv(S, 0, 10000) of
        {ok, Data} ->
            say("recv ~s", [string:trim(Data)]),
            {ok, Data};
        {error, Error} ->
            say("recv_error ~0p", [Error]),
            {error, Error}
    end.

wait_close(S) ->
    case ssl:recv(S, 0, 10000) of
        {ok, _} -> wait_close(S);
        {error, closed} -> say("closed", []);
        {error, Error} -> say("recv_error ~0p", [Error])
    end.
