"""Real HAProxy 2.6.12 output, captured from tests/integration/haproxy setups, for the parser tests."""

SERVERS_STATE = (
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state "
    "bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
    "srv_agent_addr srv_agent_port\n"
    "3 b 1 s1 127.0.0.2 2 0 10 10 1 15 3 4 6 0 0 0 - 37887 - 0 0 - - 0\n"
    "3 b 2 s2 127.0.0.1 2 12 1 1 0 1 0 2 6 0 0 0 - 1 - 0 0 - - 0\n"
    "3 b 3 s3 ::1 0 5 1 1 1 1 0 0 8 0 0 0 - 80 - 0 0 - - 0\n"
)

SHOW_STAT = (
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,statu'
    's,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rat'
    'e,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_'
    '5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,co'
    'mp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,che'
    'ck_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie'
    ',mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,c'
    'ache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur'
    ',used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ss'
    'l_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_str'
    'eam_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_str'
    'eam_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_'
    'total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,'
    'h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\nfe,FRONTEND,,,0,1,9979,3,123,174,0,0,0,,,,,OP'
    'EN,,,,,,,,,1,2,0,,,,0,3,0,3,,,,0,3,0,0,0,0,,3,3,3,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,3,3,3,0,0,0,0,'
    ',,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3,3,147,210,0,0,\nb,s1,0,0,0,1,,3,123,174'
    ',,0,,0,0,0,0,UP,10,1,0,0,0,1,0,,1,3,1,,3,,2,3,,3,L7OK,200,0,0,3,0,0,0,0,,,,3,0,0,,,,,0,,,0,0,0,0,,,,'
    'Layer7 check passed,,2,3,4,,,,127.0.0.2:37371,,http,,,,,,,,0,3,0,,,2,,0,0,0,0,0,2,0,0,1,10,,,,-,0,0,'
    '0,,,,,,,,,,,,,,,,,,,,,,\nb,s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN 1/3,1,1,0,0,0,0,0,,1,3,2,,0,,2,0,,0,IN'
    'I,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Initializing,,2,3,2,,,,127.0.0.1:1,,http,,,,,,,,0,0,0,,'
    ',0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\nb,s3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0'
    ',,,1,,,1,3,3,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,[::1]:80,,http,,,,,,,,0,'
    '0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\nb,BACKEND,0,0,0,1,998,3,123,174,0,0,,0'
    ',0,0,0,UP,10,1,0,,0,1,0,,1,3,0,,3,,1,3,,3,,,,0,3,0,0,0,0,,,,3,0,0,0,0,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,h'
    'ttp,roundrobin,,,,,,,0,3,0,0,0,,,0,0,0,0,0,,,,,10,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,6,6,43'
    '5,162,0,0,'
)

SHOW_PROC = (
    "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
    "10042           master          0 [failed: 0]   0d00h00m00s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "10045           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n"
    "# programs\n"
    "\n"
)

SHOW_PROC_OLD_WORKER = (
    "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
    "15028           master          1 [failed: 0]   0d00h00m01s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "15036           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n"
    "# old workers\n"
    "15031           worker          1               0d00h00m01s     2.6.12-1+deb12u4\n"
    "# programs\n"
    "\n"
)

SHOW_PROC_FAILED = (
    "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
    "10042           master          2 [failed: 1]   0d00h00m29s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "10576           worker          1               0d00h00m06s     2.6.12-1+deb12u4\n"
    "# programs\n"
    "\n"
)

CHECK_OUTPUT = (
    "[NOTICE]   (11777) : haproxy version is 2.6.12-1+deb12u4\n"
    "[NOTICE]   (11777) : path to executable is /usr/sbin/haproxy\n"
    "[ALERT]    (11777) : config : parsing [bad.cfg:11] : unknown keyword 'bogus' in 'frontend' section\n"
    "[ALERT]    (11777) : config : [bad.cfg:13] : 'server b/s' : weight of server s is not within 0 and 256 (999)..\n"
    "[ALERT]    (11777) : config : parsing [bad.cfg:14] : balance only supports 'roundrobin', 'static-rr', "
    "'leastconn', 'source', 'uri', 'url_param', 'hdr(name)' and 'rdp-cookie(name)' options.\n"
    "[ALERT]    (11777) : config : Error(s) found in configuration file : bad.cfg\n"
    "[ALERT]    (11777) : config : Fatal errors found in configuration.\n"
)

CHECK_OUTPUT_PROXY = (
    "[NOTICE]   (11801) : haproxy version is 2.6.12-1+deb12u4\n"
    "[ALERT]    (11801) : config : Proxy 'f': unable to find required use_backend: 'nope'.\n"
    "[ALERT]    (11801) : config : [bad2.cfg:13] : 'server b/s' : unable to find required proxy 'nope' for tracking.\n"
    "[ALERT]    (11801) : config : Fatal errors found in configuration.\n"
)

SHOW_INFO = (
    "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nRelease_date: 2026/10/17\nNbthread: 2\nNbproc: 1\n"
    "Process_num: 1\nPid: 10045\nUptime: 0d 0h00m02s\nUptime_sec: 2\nMaxconn: 9979\nHard_maxconn: 9979\n"
    "CurrConns: 0\nCumConns: 2\nCumReq: 2\nConnRate: 0\nSessRate: 0\nIdle_pct: 100\nnode: vm\nStopping: 0\n"
    "Jobs: 4\nBuild info: 2.6.12-1+deb12u4\n"
)

SHOW_MAP = "0x563f1477d390 www.example.com b\n0x7f0810047a20 a.com b\n0x7f0810047b00 a.com other\n"

MAP_LIST = (
    "# id (file) description\n"
    "2 (/tmp/hx/hosts.map) pattern loaded from file '/tmp/hx/hosts.map' used by map at file 'haproxy.cfg' "
    "line 10. curr_ver=0 next_ver=0 entry_cnt=1\n"
)
