import asyncio, json, time, urllib.request
from websockets.asyncio.client import connect
async def main():
    t=[]; c=""
    while True:
        p=json.load(urllib.request.urlopen(f"http://127.0.0.1:9400/trade-api/v2/markets?limit=1000&cursor={c}"))
        t+= [m["ticker"] for m in p["markets"]]; c=p.get("cursor") or ""
        if not c: break
    print("listed", len(t), time.strftime("%T"), flush=True)
    async with connect("ws://127.0.0.1:9400/trade-api/ws/v2", max_size=None) as ws:
        for n,s in enumerate(range(0,len(t),20000)):
            await ws.send(json.dumps({"id":n+1,"cmd":"subscribe","params":{"channels":["orderbook_delta","trade","ticker"],"market_tickers":t[s:s+20000]}}))
        n=0; kinds={}
        t0=time.time()
        while time.time()-t0<20:
            try: m=await asyncio.wait_for(ws.recv(), 1)
            except asyncio.TimeoutError: print("idle", time.strftime("%T"), kinds, flush=True); continue
            d=json.loads(m); kinds[d["type"]]=kinds.get(d["type"],0)+1
            if d["type"] in ("error",): print(m)
        print(kinds)
asyncio.run(main())
